"""PDQ perceptual hashes of photos (Meta's PDQ via PyPI `pdqhash`), as the reference hashers
compute them.

A hash is 256 bits, kept as 32 bytes (`np.packbits` of pdqhash's bit vector, first bit most
significant) and written as 64 hex digits: the same hex as ThreatExchange, HMA and the C++
`pdq-photo-hasher` print. `quality` (0-100) says how much structure the photo had: flat or
nearly blank photos hash unreliably, so matches on hashes below the configured minimum quality
are ignored.

The pixels hashed are the ones the reference hashers read (`reference_rgb`): the stored
orientation (no EXIF rotation), colour channels with any alpha ignored, 16-bit grey scaled to
8 bits; and always from the same size (`HASH_SIDE` on the longer side), whichever detectors the
worker runs. `pdq_hash` also returns the 8 dihedral variants (rotations and mirrors) that
`pdqhash.compute_dihedral` derives from the same DCT in one pass; the C++ code runs without the
GIL (`modq.detectors.pdq_native`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image

from modq.detectors import pdq_native

HASH_BYTES = 32
# PDQ looks at a 64x64 luminance downsample; hashing at most 512 px is as good and far cheaper
# for large uploads. Every hash (worker, `modq bank add`) is taken at this size.
HASH_SIDE = 512
# pdqhash.compute_dihedral's order; names as in the PDQ reference code.
DIHEDRAL = (
    "original", "rotate90", "rotate180", "rotate270", "flipX", "flipY", "flipPlus1", "flipMinus1"
)  # fmt: skip


@dataclass(frozen=True)
class PhotoHash:
    hex: str
    quality: int
    # The 8 dihedral variants in `DIHEDRAL` order (the first is `hex`); empty when unknown.
    dihedral: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    @property
    def bytes(self) -> bytes:
        return bytes.fromhex(self.hex)


def reference_rgb(img: Image.Image) -> Image.Image:
    """The RGB pixels the reference hashers hash, from a decoded but unrotated image.

    Alpha is dropped, not flattened (HMA and the C++ hasher read the colour channels and ignore
    alpha); 16-bit grey keeps its full range scaled to 8 bits (the C++ hasher reads the 16-bit
    values and PDQ's bits do not change when luminance is scaled; Pillow's own conversion would
    clip everything above 255 to white).
    """
    if img.mode == "I" or img.mode.startswith("I;16"):
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8)).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def hash_size(width: int, height: int) -> tuple[int, int]:
    """The size a photo is hashed at: `HASH_SIDE` on the longer side, never enlarged."""
    scale = min(1.0, HASH_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def pdq_hash(img: Image.Image) -> PhotoHash:
    """PDQ hash, quality and dihedral variants of one photo, at `HASH_SIDE` px."""
    img = reference_rgb(img)
    target = hash_size(*img.size)
    if target != img.size:
        img = img.resize(target, Image.Resampling.BILINEAR)
    words, quality = pdq_native.dihedral_words(np.ascontiguousarray(np.asarray(img, np.uint8)))
    packed = pdq_native.to_bytes(words)
    return PhotoHash(hex=packed[0].hex(), quality=quality, dihedral=tuple(packed))


def to_matrix(hashes: list[bytes]) -> npt.NDArray[np.uint8]:
    """Hashes as an (n, 32) uint8 matrix."""
    if not hashes:
        return np.zeros((0, HASH_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, HASH_BYTES).copy()


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def parse_hex(text: str) -> bytes:
    """A PDQ hash from its 64 hex digits; ValueError otherwise."""
    text = text.strip().lower()
    if len(text) != 2 * HASH_BYTES or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError(f"not a PDQ hash (64 hex digits): {text[:80]!r}")
    return bytes.fromhex(text)
