"""modq's PDQ hashes against the reference hashers, on generated files.

The reference is what Meta's HMA 2.0 (python-threatexchange `pdq_hasher`) computes with the
`pdqhash` package: the file's pixels as Pillow opens them, no EXIF rotation, colour channels
with alpha ignored, a 2-d (grey) array repeated to 3 channels. Two cases where HMA's Python path
is not the reference: 16-bit grey (pdqhash refuses uint16; the C++ hasher reads the 16-bit values,
and PDQ's bits do not change when luminance is scaled, so the reference is the full range
scaled to 8 bits) and palette images (HMA hashes the palette indices; the C++ hasher and modq
hash the palette colours).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image

from modq.detectors.hashing import hamming, pdq_hash
from modq.domain.preprocess import PreprocessSpec
from modq.pipeline.decode import decode_image, hash_photo, photo_hash

MAX_PIXELS = 1 << 40
# modq hashes at 512 px where the reference hashes every pixel: measured 0-8 bits apart.
CLOSE = 12


def reference(data: bytes) -> bytes:
    img = Image.open(io.BytesIO(data))
    if img.mode == "LA":
        img = img.convert("RGB")
    if img.mode == "P":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:  # 16-bit grey: full range, scaled
        arr = np.round(arr.astype(np.float64) / 257).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.dstack([arr] * 3)
    bits, _ = pdqhash.compute(np.ascontiguousarray(arr))
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


@pytest.fixture(scope="module")
def big(datasets_dir: Path) -> Image.Image:
    """A real listing photo enlarged to 2400x1600 (large enough for draft decoding)."""
    path = sorted((datasets_dir / "listings-v1" / "val" / "food.fruit").glob("*.jpg"))[0]
    return Image.open(path).convert("RGB").resize((2400, 1600), Image.Resampling.BICUBIC)


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_oriented_jpeg_hashes_the_stored_pixels(big: Image.Image, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(big, "JPEG", quality=90, exif=exif)
    ref = reference(data)
    assert hamming(hash_photo(data, MAX_PIXELS).bytes, ref) <= CLOSE
    # The model's decode (EXIF applied) is 120+ bits away as a plain hash, and its dihedral
    # variants bring it back: a worker hashing the rotated pixels would still match.
    rotated = pdq_hash(decode_image(data, PreprocessSpec(resize=224), MAX_PIXELS))
    assert hamming(rotated.bytes, ref) > 64
    assert min(hamming(v, ref) for v in rotated.dihedral) <= CLOSE


def test_alpha_is_ignored_not_flattened(big: Image.Image) -> None:
    rgba = np.array(big.convert("RGBA"))
    rgba[:, :1200, 3] = 0  # half transparent: the colours underneath still count
    rgba[:800, :, 3] = 128
    data = _save(Image.fromarray(rgba), "PNG")
    assert hamming(hash_photo(data, MAX_PIXELS).bytes, reference(data)) <= CLOSE
    la = np.array(big.convert("LA"))
    la[:, :1200, 1] = 0
    data = _save(Image.fromarray(la, "LA"), "PNG")
    assert hamming(hash_photo(data, MAX_PIXELS).bytes, reference(data)) <= CLOSE


def test_sixteen_bit_grey_keeps_its_range(big: Image.Image) -> None:
    grey16 = Image.fromarray(
        (np.asarray(big.convert("L")).astype(np.uint32) * 257).astype(np.uint16)
    )
    data = _save(grey16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    h = hash_photo(data, MAX_PIXELS)
    assert hamming(h.bytes, reference(data)) <= CLOSE
    assert h.quality >= 50  # Pillow's own convert() would have clipped it to white


def test_palette_with_transparency(big: Image.Image) -> None:
    pal = big.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    data = _save(pal, "PNG")
    assert hamming(hash_photo(data, MAX_PIXELS).bytes, reference(data)) <= CLOSE


@pytest.mark.parametrize(
    "turn",
    [
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
        Image.Transpose.FLIP_LEFT_RIGHT,
        Image.Transpose.FLIP_TOP_BOTTOM,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    ],
)
def test_rotated_and_mirrored_copies_match_through_a_dihedral_variant(
    big: Image.Image, turn: Image.Transpose
) -> None:
    original = hash_photo(_save(big, "JPEG", quality=90), MAX_PIXELS)
    data = _save(big.transpose(turn), "JPEG", quality=90)
    copy = hash_photo(data, MAX_PIXELS)
    assert hamming(copy.bytes, original.bytes) > 64
    # Within 15 bits: the radius-0 lookup used for variants is exact there.
    assert min(hamming(v, original.bytes) for v in copy.dihedral) <= 15
    # The variants are pdqhash's own for these pixels.
    assert copy.dihedral[0] == copy.bytes and len(copy.dihedral) == 8


def test_large_photo_is_hashed_close_to_the_reference(big: Image.Image) -> None:
    data = _save(big.resize((4000, 3000)), "JPEG", quality=90)  # draft-decoded at 1/4 scale
    assert hamming(hash_photo(data, MAX_PIXELS).bytes, reference(data)) <= CLOSE


def test_the_pipeline_hash_is_the_hash_of_the_bytes(datasets_dir: Path, big: Image.Image) -> None:
    """Where the worker hashes the image it already decoded (stored pixels, small enough), the
    hash is exactly the one of the bytes; everywhere else it hashes the bytes."""
    photos = sorted((datasets_dir / "listings-v1" / "val" / "food.fruit").glob("*.jpg"))[:5]
    samples = [p.read_bytes() for p in photos] + [_save(big, "JPEG"), _save(big, "PNG")]
    for data in samples:
        for side in (224, 256, 736):
            image = decode_image(data, PreprocessSpec(resize=side), MAX_PIXELS)
            assert photo_hash(image, data, MAX_PIXELS) == hash_photo(data, MAX_PIXELS)
