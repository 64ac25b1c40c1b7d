"""The pipeline as plain functions (no broker): real ONNX Runtime with the tiny model,
real photo files, and every way a photo can be broken."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.engine import Engine

from modq.detectors.hashing import hamming
from modq.domain.events import ListingEvent
from modq.pipeline.moderate import handle_messages, moderate
from modq.pipeline.photos import decode_side, load_photo
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.queries import list_rejected, query_verdicts
from modq.store.stores import open_stores
from tests.photokit import bad_photos, colour_jpeg

MAX_BYTES = 200_000


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture
def runtime(make_settings: Callable[..., Settings], photo_root: Path) -> Iterator[Runtime]:
    settings = make_settings(image_roots=[str(photo_root)], max_image_bytes=MAX_BYTES)
    rt = Runtime.build(settings, stores=open_stores(settings.database_url))
    yield rt
    rt.close()


def photo(root: Path, name: str, label: str) -> str:
    path = root / name
    path.write_bytes(colour_jpeg(label))
    return str(path)


def test_verdicts_follow_the_photos(runtime: Runtime, photo_root: Path) -> None:
    shoes = photo(photo_root, "shoes.jpg", "fashion.shoes")
    laptop = photo(photo_root, "laptop.jpg", "electronics.laptop")
    events = [
        ListingEvent(listing_id="a", declared_category="fashion.shoes", images=[shoes]),
        ListingEvent(listing_id="b", declared_category="fashion.dress", images=[laptop]),
        ListingEvent(
            listing_id="c", declared_category="electronics.laptop", images=[shoes, laptop]
        ),
    ]
    a, b, c = moderate(events, runtime)
    assert a.decision == "approve" and a.suggested[0][0] == "fashion.shoes"
    assert b.decision == "reject"
    assert b.reasons[0].text().startswith("category_mismatch: predicted electronics.laptop")
    assert c.best_photo == 1
    assert a.model_version == "tiny-1" and a.policy_version == runtime.policy.version
    assert [p.top[0][0] for p in c.photos] == ["fashion.shoes", "electronics.laptop"]


def test_every_bad_photo_becomes_a_reason_and_the_batch_goes_through(
    runtime: Runtime, photo_root: Path, tmp_path: Path
) -> None:
    bad = bad_photos(photo_root / "bad", MAX_BYTES)
    good = photo(photo_root, "good.jpg", "food.fruit")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(colour_jpeg("food.fruit"))
    cases = {**{reason: str(path) for reason, path in bad.items()},
             "outside the image roots": str(outside),
             "no such file": str(photo_root / "missing.jpg")}  # fmt: skip
    events = [
        ListingEvent(listing_id=f"bad-{i}", declared_category="food.fruit", images=[ref, good])
        for i, ref in enumerate(cases.values())
    ]
    events.append(ListingEvent(listing_id="fine", declared_category="food.fruit", images=[good]))
    verdicts = moderate(events, runtime)
    assert len(verdicts) == len(events)
    for verdict, fragment in zip(verdicts, cases, strict=False):
        assert verdict.decision == "review", verdict
        assert verdict.reasons[0].text().startswith("image_unreadable: photo 0: ")
        assert fragment in verdict.reasons[0].detail, (fragment, verdict.reasons)
        assert verdict.photos[1].ok and verdict.best_photo == 1
    assert verdicts[-1].decision == "approve"


def test_bad_events_are_recorded_not_dropped(
    runtime: Runtime, photo_root: Path, engine: Engine
) -> None:
    good = photo(photo_root, "ok.jpg", "fashion.hat")
    bodies = [
        {"event": "{not json", "source": "new"},
        {"event": {"listing_id": "m1", "images": [good]}, "source": "new"},
        {"event": {"listing_id": "u1", "declared_category": "pets.dog", "images": [good]}},
        {"event": {"listing_id": "t1", "declared_category": "fashion.hat", "images": [good] * 11}},
        {"event": {"listing_id": "pipe-ok", "declared_category": "fashion.hat", "images": [good]}},
    ]
    outcome = handle_messages(bodies, runtime, "new")
    assert [v.listing_id for v in outcome.verdicts] == ["pipe-ok"]
    reasons = [r.reason for r in outcome.rejected]
    assert reasons[0].startswith("not JSON")
    assert "declared_category: Field required" in reasons[1]
    assert reasons[2] == "unknown category 'pets.dog'"
    assert reasons[3] == "too many images: 11 (at most 10)"
    stored = list_rejected(engine, limit=0)
    assert {r["payload"] for r in stored} >= {"{not json"}
    assert {r["listing_id"] for r in stored} >= {"m1", "u1", "t1"}
    assert query_verdicts(engine, listing="pipe-ok")[0]["decision"] == "approve"


def test_each_photo_is_decoded_at_what_its_category_needs(
    runtime: Runtime, tmp_path: Path, datasets_dir: Path
) -> None:
    # The default policy switches OCR (736 px) off everywhere; open_nsfw needs 256 px.
    assert {d.name for d in runtime.detectors} == {"nudity", "contacts"}
    assert decode_side(runtime, "fashion.shoes") == 256
    assert decode_side(runtime, None) == 736  # no category (modq classify): every detector
    source = sorted((datasets_dir / "listings-v1" / "val" / "food.fruit").glob("*.jpg"))[0]
    with Image.open(source) as img:
        big = img.convert("RGB").resize((img.width * 7, img.height * 7))
    path = Path(runtime.settings.image_roots[0]) / "big.jpg"
    big.save(path, "JPEG", quality=25)  # under the fixture's 200 kB cap
    sized = load_photo(0, str(path), runtime, "food.fruit")
    full = load_photo(0, str(path), runtime, None)
    assert sized.image is not None and full.image is not None
    assert min(full.image.size) >= 736 > min(sized.image.size) >= 256
    assert "nudity" in sized.prepared
    # PDQ does not depend on the decode size the detectors chose.
    assert sized.pdq is not None and full.pdq is not None
    assert hamming(sized.pdq.bytes, full.pdq.bytes) <= 6
