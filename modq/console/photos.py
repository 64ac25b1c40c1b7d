"""Photos for the console, through the worker's own confined loader.

Only a reference stored on the listing being viewed is ever fetched (by index, never by a
URL from the browser), with `PhotoFetcher`'s image roots and host rules, so the console is
not an open proxy. The bytes are decoded like the worker decodes them and re-encoded as a
JPEG: the browser never receives a file as the seller uploaded it.
"""

from __future__ import annotations

import io
from typing import Any

from fastapi import HTTPException
from PIL import Image

from modq.detectors.hashing import PhotoHash, pdq_hash
from modq.domain.preprocess import PreprocessSpec
from modq.errors import PhotoError
from modq.pipeline.decode import decode_image
from modq.pipeline.fetch import PhotoFetcher

MAX_SIDE = 1024
# The decode itself refuses more than `max_image_pixels`; this bounds the re-encoded answer.
FULL_SIDE = 2048


def listing_ref(detail: dict[str, Any] | None, index: int) -> str:
    """The listing's `index`-th photo reference, or 404."""
    if detail is None:
        raise HTTPException(404, "no such listing")
    images = list(detail.get("images") or [])
    if not 0 <= index < len(images):
        raise HTTPException(404, "no such photo on this listing")
    return str(images[index])


def _load(fetcher: PhotoFetcher, ref: str, max_pixels: int, resize: int) -> Image.Image:
    try:
        return decode_image(fetcher.fetch(ref), PreprocessSpec(resize=resize), max_pixels)
    except PhotoError as exc:
        raise HTTPException(404, f"photo unavailable: {exc}") from exc


# size -> (the shorter side the decode keeps at least, the longest side served, JPEG quality).
# "full" keeps every pixel up to FULL_SIDE (a phone number in a photo must be readable);
# "view" is the job page's photo, "thumb" the queue's and seller view's.
SIZES: dict[str, tuple[int, int, int]] = {
    "thumb": (96, 160, 75),
    "view": (224, MAX_SIDE, 85),
    "full": (FULL_SIDE // 2, FULL_SIDE, 85),
}


def photo_jpeg(fetcher: PhotoFetcher, ref: str, max_pixels: int, size: str = "view") -> bytes:
    """The photo re-encoded as a JPEG at `size` (a key of SIZES)."""
    keep, longest, quality = SIZES[size]
    img = _load(fetcher, ref, max_pixels, keep)
    img.thumbnail((longest, longest))
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def photo_hash(fetcher: PhotoFetcher, ref: str, max_pixels: int) -> PhotoHash:
    """PDQ hash of the photo, decoded as `modq bank add` decodes files."""
    return pdq_hash(_load(fetcher, ref, max_pixels, 512))
