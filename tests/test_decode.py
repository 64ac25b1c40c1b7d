"""decode_image on bad and awkward photos: each is an RGB image or a PhotoError, never a crash."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modq.domain.preprocess import PreprocessSpec
from modq.errors import PhotoDecodeError, PhotoError, PhotoTooLargeError
from modq.pipeline.decode import decode_image

SPEC = PreprocessSpec()
MAX_PIXELS = 50_000_000


@pytest.fixture(scope="session")
def photo_path(datasets_dir: Path) -> Path:
    return sorted((datasets_dir / "listings-v1" / "val" / "fashion.shoes").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def jpeg(photo_path: Path) -> bytes:
    return photo_path.read_bytes()


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG header claiming width x height, with a tiny IDAT: no pixels exist."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


def test_real_jpeg_decodes(jpeg: bytes) -> None:
    img = decode_image(jpeg, SPEC, MAX_PIXELS)
    assert img.mode == "RGB" and min(img.size) >= SPEC.resize


def test_empty_file() -> None:
    with pytest.raises(PhotoDecodeError, match=r"^empty file$"):
        decode_image(b"", SPEC, MAX_PIXELS)


def test_non_image_bytes() -> None:
    with pytest.raises(PhotoDecodeError, match=r"^not an image \(unrecognised format\)$"):
        decode_image(b"<html><body>404 Not Found</body></html>", SPEC, MAX_PIXELS)


def test_truncated_jpeg(jpeg: bytes) -> None:
    with pytest.raises(
        PhotoDecodeError, match=r"^corrupt or truncated image: image file is truncated"
    ):
        decode_image(jpeg[: len(jpeg) // 2], SPEC, MAX_PIXELS)


def test_jpeg_cut_inside_its_header(jpeg: bytes) -> None:
    with pytest.raises(PhotoDecodeError, match=r"^unreadable header: "):
        decode_image(jpeg[:200], SPEC, MAX_PIXELS)


def test_decompression_bomb_is_refused_from_the_header() -> None:
    data = bomb_png(30000, 30000)
    assert len(data) < 200  # the whole "900-megapixel" photo
    with pytest.raises(PhotoTooLargeError) as info:
        decode_image(data, SPEC, MAX_PIXELS)
    assert str(info.value) == "30000x30000 = 900000000 pixels exceeds the cap of 50000000"


def test_pixel_cap_boundary() -> None:
    data = encode(Image.new("RGB", (300, 250), (10, 20, 30)), "PNG")
    assert decode_image(data, SPEC, 300 * 250).size == (300, 250)
    with pytest.raises(
        PhotoTooLargeError, match=r"^300x250 = 75000 pixels exceeds the cap of 74999$"
    ):
        decode_image(data, SPEC, 300 * 250 - 1)


def test_huge_jpeg_is_decoded_at_reduced_scale(photo_path: Path) -> None:
    with Image.open(photo_path) as src:
        big = src.convert("RGB").resize((3200, 4264), Image.Resampling.BILINEAR)
    data = encode(big, "JPEG", quality=85)
    for resize in (224, 256, 400):
        spec = PreprocessSpec(resize=resize, input_size=min(resize, 224))
        img = decode_image(data, spec, MAX_PIXELS)
        assert img.mode == "RGB"
        assert img.width < big.width and img.height < big.height
        assert min(img.size) >= resize
        # draft() scales by a power of two, so the aspect ratio survives (up to rounding).
        assert abs(img.width / img.height - big.width / big.height) < 0.01


def test_exif_rotation_is_applied() -> None:
    stored = Image.new("RGB", (80, 40), (220, 0, 0))
    stored.paste((0, 0, 220), (40, 0, 80, 40))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    img = decode_image(data, SPEC, MAX_PIXELS)
    assert img.size == (40, 80)
    top, bottom = np.asarray(img)[10, 20], np.asarray(img)[70, 20]
    assert top[0] > 180 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 180 and bottom[0] < 60


def _rgba_photo() -> Image.Image:
    img = Image.new("RGBA", (40, 40), (200, 30, 30, 255))
    img.paste((0, 0, 0, 0), (0, 0, 20, 40))  # left half fully transparent
    return img


def _bilevel_photo() -> Image.Image:
    img = Image.new("1", (40, 40), 1)
    img.paste(0, (20, 0, 40, 40))  # right half black: an all-white photo would be blank
    return img


@pytest.mark.parametrize(
    ("name", "data", "left", "right"),
    [
        ("RGBA", encode(_rgba_photo(), "PNG"), (255, 255, 255), (200, 30, 30)),
        ("LA", encode(_rgba_photo().convert("LA"), "PNG"), (255, 255, 255), (79, 79, 79)),
        (
            "P+transparency",
            encode(_rgba_photo().convert("P"), "PNG", transparency=0),
            (255, 255, 255),
            (200, 30, 30),
        ),
        (
            "P",
            encode(
                Image.new("RGB", (40, 40), (0, 128, 0)).convert(
                    "P", palette=Image.Palette.ADAPTIVE
                ),
                "PNG",
            ),
            (0, 128, 0),
            (0, 128, 0),
        ),
        ("L", encode(Image.new("L", (40, 40), 90), "PNG"), (90, 90, 90), (90, 90, 90)),
        ("L-jpeg", encode(Image.new("L", (40, 40), 90), "JPEG"), (90, 90, 90), (90, 90, 90)),
        ("1", encode(_bilevel_photo(), "PNG"), (255, 255, 255), (0, 0, 0)),
        (
            "CMYK-jpeg",
            encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", quality=95),
            (255, 0, 0),
            (255, 0, 0),
        ),
    ],
)
def test_modes_become_rgb(
    name: str,
    data: bytes,
    left: tuple[int, int, int],
    right: tuple[int, int, int],
) -> None:
    img = decode_image(data, SPEC, MAX_PIXELS)
    assert img.mode == "RGB" and img.size == (40, 40)
    pixels = np.asarray(img).astype(int)
    assert np.abs(pixels[20, 5] - left).max() <= 3, f"{name} left {pixels[20, 5]}"
    assert np.abs(pixels[20, 35] - right).max() <= 3, f"{name} right {pixels[20, 35]}"


def test_16_bit_greyscale_keeps_its_tones() -> None:
    # Pillow's plain convert() would clip every 16-bit value above 255 to white.
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    img = decode_image(encode(Image.fromarray(ramp), "PNG"), SPEC, MAX_PIXELS)
    assert img.mode == "RGB"
    grey = np.asarray(img)[..., 0].astype(int)
    assert grey[0, 0] == 0 and grey[-1, -1] == 255
    assert abs(grey[32, 0] - 128) <= 2  # the middle of the ramp is mid-grey, not white


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's TIFF plugin warns on bad tags
def test_corrupted_photos_raise_only_photo_errors(jpeg: bytes) -> None:
    """Seeded byte flips and cuts over several formats: no other exception may escape."""
    with Image.open(io.BytesIO(jpeg)) as src:
        small = src.convert("RGB").resize((64, 48))
    sources = [jpeg] + [encode(small, fmt) for fmt in ("PNG", "GIF", "WEBP", "BMP", "TIFF")]
    rng = random.Random(1234)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        try:
            img = decode_image(bytes(data), SPEC, MAX_PIXELS)
        except PhotoError:
            outcomes["refused"] += 1
        else:
            assert img.mode == "RGB"
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0, outcomes
