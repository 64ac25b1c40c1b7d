"""PDQ perceptual hashes of photos (Meta's PDQ via PyPI `pdqhash`).

A hash is 256 bits, kept as 32 bytes (`np.packbits` of pdqhash's bit vector, first bit most
significant) and written as 64 hex digits. `quality` (0-100) says how much structure the
photo had: flat or nearly blank photos hash unreliably, so matches on hashes below the
configured minimum quality are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

HASH_BYTES = 32
# PDQ looks at a 64x64 luminance downsample; hashing at most 512 px is as good and far
# cheaper for large uploads.
_MAX_SIDE = 512


@dataclass(frozen=True)
class PhotoHash:
    hex: str
    quality: int

    @property
    def bytes(self) -> bytes:
        return bytes.fromhex(self.hex)


def pdq_hash(img: Image.Image) -> PhotoHash:
    """PDQ hash and quality of one RGB photo."""
    if max(img.size) > _MAX_SIDE:
        img = img.copy()
        img.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.BILINEAR)
    arr = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    bits, quality = pdqhash.compute(arr)
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    return PhotoHash(hex=packed.tobytes().hex(), quality=int(quality))


def to_matrix(hashes: list[bytes]) -> npt.NDArray[np.uint8]:
    """Hashes as an (n, 32) uint8 matrix."""
    if not hashes:
        return np.zeros((0, HASH_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, HASH_BYTES).copy()


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())
