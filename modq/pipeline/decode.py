"""Bytes → a small RGB photo, safely and cheaply.

Before anything is decoded, the header's pixel count is checked against `max_image_pixels`
(decompression bombs) and against what the file's size can hold at all (a 700-byte file
claiming 7000x7000 is lying or truncated). JPEGs are decoded at a reduced DCT scale (Pillow's
draft mode); every other format is decoded and immediately downscaled to the size the model and
detectors need, so only the small image is kept. Full-resolution decodes in one process share
a budget of `max_image_pixels` pixels, so however many threads decode, the transient memory is
about one maximal image. Photos that show nothing (almost uniformly black or white) are a
`PhotoBlankError`. Every Pillow failure becomes a `PhotoError`.

`decode_for_hash` is the one decode PDQ hashes come from (worker and `modq bank add`): a fixed
size whichever detectors run, and the pixels the reference hashers read (no EXIF rotation).
"""

from __future__ import annotations

import io
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageStat, UnidentifiedImageError
from PIL import _imaging as pillow_core

from modq.detectors.hashing import HASH_SIDE, PhotoHash, hash_size, pdq_hash, reference_rgb
from modq.domain.preprocess import PreprocessSpec, resized_shape
from modq.errors import PhotoBlankError, PhotoDecodeError, PhotoTooLargeError

# modq enforces its own pixel cap before decoding; Pillow's global one would only warn.
Image.MAX_IMAGE_PIXELS = None
# Pillow allocates image memory in blocks (16 MB by default). glibc serves blocks that size from
# its heap once its dynamic mmap threshold has grown (up to 32 MB), and a heap keeps freed memory:
# after a few huge photos the worker kept ~1 GB it no longer used. Blocks over 32 MB are always
# their own mmap, returned to the system when the image is freed (bench/bench_decode_memory.py:
# peak +982 MB with 16 MB blocks, +210 MB with these).
PILLOW_BLOCK_BYTES = 64 * 2**20
pillow_core.set_block_size(PILLOW_BLOCK_BYTES)

# A photo is blank when its luminance barely varies (standard deviation at most BLANK_SPREAD,
# on 0-255) around a mean at most DARK (black) or at least LIGHT (white).
BLANK_SPREAD = 3.0
DARK = 10.0
LIGHT = 245.0
# Deflate cannot compress better than 1032:1, so a PNG needs at least raw/1032 bytes.
DEFLATE_MAX_RATIO = 1032
# Huffman-coded JPEG: at least one bit per 8x8 luminance block.
JPEG_MIN_BITS_PER_BLOCK = 1
# Start-of-frame markers of arithmetic-coded JPEGs (one scan of the bytes for all six).
_ARITHMETIC_SOF = re.compile(b"\xff[\xc9\xca\xcb\xcd\xce\xcf]")
# Lower bound of bits per pixel of a PNG decoded into each Pillow mode.
_PNG_BITS = {"1": 1, "P": 1, "L": 8, "LA": 16, "I": 16, "I;16": 16, "RGB": 24, "RGBA": 32}
# Marks (in Image.info) a decode whose pixels are the stored ones: see `photo_hash`.
_AS_STORED = "modq_as_stored"
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class PixelBudget:
    """Full-resolution pixels being decoded at once; a request over the capacity runs alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_use = 0

    @contextmanager
    def hold(self, pixels: int, capacity: int) -> Iterator[None]:
        pixels = min(pixels, capacity)
        with self._cond:
            self._cond.wait_for(lambda: self._in_use == 0 or self._in_use + pixels <= capacity)
            self._in_use += pixels
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= pixels
                self._cond.notify_all()


_BUDGET = PixelBudget()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open `data` lazily, refusing what is not an image or has too many pixels."""
    if not data:
        raise PhotoDecodeError("empty file")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise PhotoDecodeError("not an image (unrecognised format)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise PhotoDecodeError(f"unreadable header: {exc}") from exc

    width, height = img.size
    if width <= 0 or height <= 0:
        raise PhotoDecodeError(f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise PhotoTooLargeError(
            f"{width}x{height} = {width * height} pixels exceeds the cap of {max_pixels}"
        )
    _check_size_can_hold(img, data)
    return img


def decode_image(data: bytes, spec: PreprocessSpec, max_pixels: int) -> Image.Image:
    """Decode `data` to an RGB image whose shorter side is at least `spec.resize`."""
    img = _open(data, max_pixels)
    width, height = img.size
    try:
        if img.format == "JPEG":
            # draft() picks the largest DCT scaling that still leaves both sides >= requested.
            img.draft("RGB", resized_shape(width, height, spec.resize))
        with _BUDGET.hold(img.width * img.height, max_pixels):
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
            if img.format == "JPEG":
                _check_jpeg_tail(img, width, height)
            orientation = img.getexif().get(0x0112)
            # The pixels exactly as stored, and small enough that the hash decode would not
            # scale them either: the PDQ hash can be taken from this image (`photo_hash`).
            as_stored = (
                img.size == (width, height)
                and img.mode == "RGB"
                and orientation not in _ORIENTATION
                and max(width, height) < 2 * HASH_SIDE
            )
            img = _shrink(img, spec)  # the full-resolution image is dropped here
        if orientation in _ORIENTATION:
            img = img.transpose(_ORIENTATION[orientation])
        if img.mode != "RGB":
            img = _to_rgb(img)
    except PhotoDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise PhotoDecodeError(f"corrupt or truncated image: {exc}") from exc
    _check_not_blank(img)
    if as_stored and img.size == (width, height):
        img.info[_AS_STORED] = True
    return img


def _check_size_can_hold(img: Image.Image, data: bytes) -> None:
    """Refuse, before decoding, a header that claims more pixels than the file can encode:
    Pillow would otherwise allocate the full image and fill what is missing with grey."""
    width, height = img.size
    if img.format == "PNG":
        bits = _PNG_BITS.get(img.mode, 1)
        needed = height * (math.ceil(width * bits / 8) + 1) // DEFLATE_MAX_RATIO
    elif img.format == "JPEG" and not _ARITHMETIC_SOF.search(data):
        needed = (width // 8) * (height // 8) * JPEG_MIN_BITS_PER_BLOCK // 8
    else:
        return
    if len(data) < needed:
        raise PhotoDecodeError(
            f"corrupt or truncated image: {len(data)} bytes cannot hold the {width}x{height} "
            f"pixels the header claims (a {img.format} that size needs at least {needed} bytes)"
        )


def _check_jpeg_tail(img: Image.Image, width: int, height: int) -> None:
    """A JPEG whose data ends before its declared size decodes the rest as exactly 128 (all
    coefficients zero): a bottom band of exactly that grey under a top that is not is no
    photo. (A photo that is flat 128 grey all over is left alone.)"""
    if img.mode not in ("RGB", "L"):
        return
    band = max(1, img.height // 16)
    tail = np.asarray(img.crop((0, img.height - band, img.width, img.height)))
    head = np.asarray(img.crop((0, 0, img.width, band)))
    if (tail == 128).all() and not (head == 128).all():
        raise PhotoDecodeError(
            f"corrupt or truncated image: the JPEG data ends before its declared "
            f"{width}x{height} (the rest would decode as flat grey)"
        )


def _shrink(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Downscale so the shorter side is `spec.resize`, when it is more than twice that."""
    if min(img.size) <= 2 * spec.resize:
        return img
    if img.mode in ("1", "P"):  # resize would fall back to nearest neighbour
        img = _to_rgb(img)
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    resample = (
        Image.Resampling.BICUBIC if spec.interpolation == "bicubic" else Image.Resampling.BILINEAR
    )
    size = resized_shape(img.width, img.height, spec.resize)
    return img.resize(size, resample, reducing_gap=3.0)


def _check_not_blank(img: Image.Image) -> None:
    stat = ImageStat.Stat(img.convert("L"))
    mean, spread = stat.mean[0], stat.stddev[0]
    if spread <= BLANK_SPREAD and (mean <= DARK or mean >= LIGHT):
        colour = "black" if mean <= DARK else "white"
        raise PhotoBlankError(
            f"the photo is almost entirely {colour} "
            f"(mean brightness {mean:.1f}, spread {spread:.1f} of 255)"
        )


def decode_for_hash(data: bytes, max_pixels: int) -> Image.Image:
    """Decode `data` as stored (no EXIF rotation, alpha and 16-bit kept) at no less than the
    size PDQ hashes are taken at; `pdq_hash` does the rest."""
    img = _open(data, max_pixels)
    try:
        if img.format == "JPEG":
            img.draft("RGB", hash_size(*img.size))
        with _BUDGET.hold(img.width * img.height, max_pixels):
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
            if max(img.size) >= 2 * HASH_SIDE:
                # Keep only what PDQ looks at: the reference pixels, box-averaged, so no
                # full-resolution PNG is held while the hash is computed.
                img = reference_rgb(img).reduce(max(img.size) // HASH_SIDE)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise PhotoDecodeError(f"corrupt or truncated image: {exc}") from exc
    return img


def photo_hash(image: Image.Image, data: bytes, max_pixels: int) -> PhotoHash:
    """The PDQ hash of a photo the pipeline has decoded: from `image` itself when it holds the
    stored pixels at a size the hash decode would not scale (most listing photos; saves a
    second decode), else from the bytes (`hash_photo`). Either way the same hash."""
    if image.info.get(_AS_STORED):
        try:
            return pdq_hash(image)
        except (OSError, ValueError) as exc:
            raise PhotoDecodeError(f"cannot hash this image: {exc}") from exc
    return hash_photo(data, max_pixels)


def hash_photo(data: bytes, max_pixels: int) -> PhotoHash:
    """The PDQ hash (and dihedral variants) of a photo file's bytes."""
    img = decode_for_hash(data, max_pixels)
    try:
        return pdq_hash(img)
    except (OSError, ValueError) as exc:
        raise PhotoDecodeError(f"cannot hash this image: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white, as marketplaces display such photos."""
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit greyscale (PNG, TIFF): Pillow's convert() clips every value above 255 to
        # white, so scale the 0-65535 range down to 8 bits instead.
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return Image.fromarray((wide >> 8).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")
