"""Bytes → RGB photo, safely and cheaply.

The pixel count is checked from the header before anything is decoded (decompression
bombs), JPEGs are decoded at reduced scale with Pillow's draft mode when they are much
larger than the model needs, and every Pillow failure becomes a `PhotoError`.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from modq.domain.preprocess import PreprocessSpec, resized_shape
from modq.errors import PhotoDecodeError, PhotoTooLargeError

# modq enforces its own pixel cap before decoding; Pillow's global one would only warn.
Image.MAX_IMAGE_PIXELS = None


def decode_image(
    data: bytes, spec: PreprocessSpec, max_pixels: int, min_long: int = 0
) -> Image.Image:
    """Decode `data` to an RGB image whose shorter side is at least `spec.resize` and, with
    `min_long`, whose longer side is at least that (PDQ hashes a 512-px box, issue 14)."""
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
    try:
        if img.format == "JPEG":
            # draft() picks the largest DCT scaling that still leaves both sides >= requested.
            shorter = spec.resize
            if min_long:
                shorter = max(shorter, -(-min_long * min(width, height) // max(width, height)))
            img.draft("RGB", resized_shape(width, height, shorter))
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
