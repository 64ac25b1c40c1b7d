"""Bytes → RGB photo, safely and cheaply.

The pixel count is checked from the header before anything is decoded (decompression
bombs), JPEGs are decoded at reduced scale with Pillow's draft mode when they are much
larger than the model needs, and every Pillow failure becomes a `PhotoError`.

`decode_for_hash` is the one decode PDQ hashes come from (worker and `modq bank add`): a fixed
size whichever detectors run, and the pixels the reference hashers read (no EXIF rotation).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from modq.detectors.hashing import PhotoHash, hash_size, pdq_hash
from modq.domain.preprocess import PreprocessSpec, resized_shape
from modq.errors import PhotoDecodeError, PhotoTooLargeError

# modq enforces its own pixel cap before decoding; Pillow's global one would only warn.
Image.MAX_IMAGE_PIXELS = None


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
    return img


def decode_image(data: bytes, spec: PreprocessSpec, max_pixels: int) -> Image.Image:
    """Decode `data` to an RGB image whose shorter side is at least `spec.resize`."""
    img = _open(data, max_pixels)
    width, height = img.size
    try:
        if img.format == "JPEG":
            # draft() picks the largest DCT scaling that still leaves both sides >= requested.
            img.draft("RGB", resized_shape(width, height, spec.resize))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        img = ImageOps.exif_transpose(img) or img
        if img.mode != "RGB":
            img = _to_rgb(img)
    except PhotoTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise PhotoDecodeError(f"corrupt or truncated image: {exc}") from exc
    return img


def decode_for_hash(data: bytes, max_pixels: int) -> Image.Image:
    """Decode `data` as stored (no EXIF rotation, alpha and 16-bit kept) at no less than the
    size PDQ hashes are taken at; `pdq_hash` does the rest."""
    img = _open(data, max_pixels)
    try:
        if img.format == "JPEG":
            img.draft("RGB", hash_size(*img.size))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise PhotoDecodeError(f"corrupt or truncated image: {exc}") from exc
    return img


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
