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


def photo_jpeg(fetcher: PhotoFetcher, ref: str, max_pixels: int) -> bytes:
    img = _load(fetcher, ref, max_pixels, 224)
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def photo_hash(fetcher: PhotoFetcher, ref: str, max_pixels: int) -> PhotoHash:
    """PDQ hash of the photo, decoded as `modq bank add` decodes files."""
    return pdq_hash(_load(fetcher, ref, max_pixels, 512))
