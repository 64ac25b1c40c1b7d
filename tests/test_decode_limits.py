"""decode_image under hostile photos (issue 12): huge PNGs decoded and shrunk at once, headers
that claim more pixels than their file holds, blank photos, and the process-wide pixel budget."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modq.domain.preprocess import PreprocessSpec
from modq.errors import PermanentError, PhotoBlankError, PhotoDecodeError
from modq.pipeline.decode import PixelBudget, decode_image

SPEC = PreprocessSpec()
MAX_PIXELS = 50_000_000


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def patched_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG data under a baseline SOF header that claims width x height."""
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    struct.pack_into(">HH", out, sof + 5, height, width)
    return bytes(out)


def two_tone(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))  # right half blue
    return img.convert(mode) if mode != "RGB" else img


# -- large photos are kept small ----------------------------------------------------------------


@pytest.mark.integration  # a decoding stress test (5 s of CPU): kept out of make test-fast
def test_a_7000x7000_png_comes_back_at_the_size_the_model_needs() -> None:
    data = encode(two_tone((7000, 7000)), "PNG")
    assert len(data) < 400_000  # small on disk, 49 megapixels decoded
    img = decode_image(data, SPEC, MAX_PIXELS)
    assert img.mode == "RGB" and img.size == (SPEC.resize, SPEC.resize)
    pixels = np.asarray(img).astype(int)
    assert np.abs(pixels[100, 10] - (200, 30, 30)).max() <= 3
    assert np.abs(pixels[100, -10] - (20, 20, 220)).max() <= 3


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "1", "I;16"])
def test_every_mode_is_shrunk_and_made_rgb(mode: str) -> None:
    img = two_tone((1800, 1200))
    if mode == "I;16":
        source = Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257)
    else:
        source = img.convert(mode)
    spec = PreprocessSpec(resize=256, input_size=224)
    out = decode_image(encode(source, "PNG"), spec, MAX_PIXELS)
    assert out.mode == "RGB" and out.size == (384, 256)  # aspect ratio kept


def test_a_photo_under_twice_the_size_is_left_alone() -> None:
    img = decode_image(encode(two_tone((440, 300)), "PNG"), SPEC, MAX_PIXELS)
    assert img.size == (440, 300)  # preprocessing resizes it once, as before


def test_exif_rotation_survives_the_shrink() -> None:
    stored = two_tone((1600, 800))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img = decode_image(encode(stored, "PNG", exif=exif.tobytes()), SPEC, MAX_PIXELS)
    assert img.size == (224, 448)
    top, bottom = np.asarray(img)[20, 112], np.asarray(img)[420, 112]
    assert top[0] > 180 and bottom[2] > 180  # the stored left (red) is now on top


# -- headers that lie -------------------------------------------------------------------------


def test_a_tiny_jpeg_claiming_7000x7000_is_refused_before_decoding() -> None:
    data = patched_jpeg_size(encode(two_tone((64, 64)), "JPEG"), 7000, 7000)
    assert len(data) < 1000
    with pytest.raises(PhotoDecodeError) as info:
        decode_image(data, SPEC, MAX_PIXELS)
    assert str(info.value).startswith(
        f"corrupt or truncated image: {len(data)} bytes cannot hold the 7000x7000 pixels"
    )
    assert isinstance(info.value, PermanentError)


def test_a_png_header_claiming_more_than_deflate_can_hold_is_refused() -> None:
    data = encode(two_tone((64, 64)), "PNG")
    ihdr = struct.pack(">II", 7000, 7000) + data[24:29]  # width, height, then the rest as is
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = data[:16] + ihdr + crc + data[33:]
    with pytest.raises(PhotoDecodeError, match=r"cannot hold the 7000x7000 pixels.* PNG"):
        decode_image(data, SPEC, MAX_PIXELS)


def test_a_real_photo_under_a_larger_header_is_refused(datasets_dir: Path) -> None:
    photo = sorted((datasets_dir / "listings-v1" / "val" / "fashion.shoes").glob("*.jpg"))[0]
    with Image.open(photo) as src:
        data = encode(src.convert("RGB").resize((640, 480)), "JPEG", quality=90)
    lying = patched_jpeg_size(data, 1280, 960)  # enough bytes for the size bound
    with pytest.raises(PhotoDecodeError, match=r"JPEG data ends before its declared 1280x960"):
        decode_image(lying, SPEC, MAX_PIXELS)
    assert decode_image(data, SPEC, MAX_PIXELS).mode == "RGB"  # the honest one decodes


def test_a_flat_mid_grey_jpeg_is_not_mistaken_for_a_truncated_one() -> None:
    img = decode_image(encode(Image.new("RGB", (400, 300), (128, 128, 128)), "JPEG"), SPEC, 10**8)
    assert img.size == (400, 300)


# -- blank photos -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pixels", "colour"),
    [
        ("black", np.zeros((480, 640, 3), np.uint8), "black"),
        ("noisy black", np.random.default_rng(1).integers(0, 7, (480, 640, 3), np.uint8), "black"),
        ("white", np.full((480, 640, 3), 255, np.uint8), "white"),
    ],
)
def test_blank_photos_are_refused(name: str, pixels: np.ndarray, colour: str) -> None:
    for fmt in ("JPEG", "PNG"):
        with pytest.raises(PhotoBlankError, match=f"^the photo is almost entirely {colour} "):
            decode_image(encode(Image.fromarray(pixels), fmt), SPEC, MAX_PIXELS)
    assert PhotoBlankError.code == "image_blank"


def test_a_dark_photo_with_something_in_it_is_not_blank() -> None:
    pixels = np.zeros((480, 640, 3), np.uint8)
    pixels[200:260, 280:360] = (230, 180, 40)  # a small bright object on black velvet
    img = decode_image(encode(Image.fromarray(pixels), "JPEG"), SPEC, MAX_PIXELS)
    assert img.mode == "RGB" and min(img.size) >= SPEC.resize


# -- the pixel budget -------------------------------------------------------------------------


def test_the_pixel_budget_admits_up_to_its_capacity() -> None:
    budget = PixelBudget()
    second_in = threading.Event()

    def second() -> None:
        with budget.hold(60, capacity=100):
            second_in.set()

    with budget.hold(30, capacity=100), budget.hold(60, capacity=100):  # 90 of 100 in use
        waiter = threading.Thread(target=second)
        waiter.start()
        assert not second_in.wait(0.3)  # 150 would exceed the capacity: it waits
    assert second_in.wait(5)
    waiter.join(5)
    with budget.hold(10**9, capacity=100):  # more than the capacity: runs when alone
        pass
