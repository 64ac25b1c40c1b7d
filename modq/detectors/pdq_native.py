"""PDQ's C++ hasher called without Python's global lock.

`pdqhash.compute_dihedral` (the PyPI wheel's Cython binding) holds the GIL for the whole C++
computation and then turns each of the 8 hashes into a list of 256 Python ints: about 1 ms
a listing photo during which no other loading thread can run Python (issue 14: the load phase
of a batch ran at 89% of the cores). The same wheel exports the C++ function it wraps,
`facebook::pdq::hashing::pdqDihedralHash256esFromFloatLuma`; calling it through ctypes
releases the GIL for the call and hands back the 16-bit words directly. The luma is computed
with the binding's own numpy expression, so hashes and quality are bit for bit the binding's
(tests/test_pdq_native.py checks that on dataset photos).

Where the wheel does not export the symbol (another build), `dihedral_words` falls back to
the binding, with a log line.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pdqhash
from pdqhash import bindings

log = logging.getLogger(__name__)

# The exported name of pdqDihedralHash256esFromFloatLuma(float*, float*, int, int,
# float[64][64], float[16][64], float[16][16], float[16][16], Hash256* x 8, int&).
_SYMBOL = (
    "_ZN8facebook3pdq7hashing33pdqDihedralHash256esFromFloatLumaEPfS2_iiPA64_fS4_PA16_fS6_"
    "PNS1_7Hash256ES8_S8_S8_S8_S8_S8_S8_Ri"
)
_WORDS = 16  # a Hash256 is 16 uint16 words, w[0] least significant
_VARIANTS = 8

U8 = npt.NDArray[np.uint8]
Words = npt.NDArray[np.uint16]  # (8, 16): one row per dihedral variant


def _luma(rgb: U8) -> npt.NDArray[np.float32]:
    # Exactly the binding's expression (float64 products, summed left to right, then float32).
    luma = rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114
    return np.ascontiguousarray(luma.astype(np.float32))


def _address(arr: npt.NDArray[Any]) -> int:
    address: int = arr.__array_interface__["data"][0]
    return address


def _load_native() -> Callable[[U8], tuple[Words, int]] | None:
    try:
        lib = ctypes.CDLL(bindings.__file__)
        fn: Any = getattr(lib, _SYMBOL)
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_bool
    fn.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        *([ctypes.c_void_p] * (4 + _VARIANTS)), ctypes.POINTER(ctypes.c_int),
    ]  # fmt: skip
    # The C++ scratch buffers (64x64, 16x64, 16x16, 16x16 floats), as offsets into one array.
    sizes = (64 * 64, 16 * 64, 16 * 16, 16 * 16)
    offsets = [4 * sum(sizes[:k]) for k in range(len(sizes))]

    def run(rgb: U8) -> tuple[Words, int]:
        luma = _luma(rgb)
        rows, cols = luma.shape
        # One allocation for the C++ function's second full-size buffer and its small ones;
        # addresses come from __array_interface__ (arr.ctypes costs ~15 us a call).
        scratch = np.empty(luma.size + sum(sizes), np.float32)
        words = np.zeros((_VARIANTS, _WORDS), np.uint16)
        quality = ctypes.c_int(0)
        small = _address(scratch) + 4 * luma.size
        base = _address(words)
        # ctypes drops the GIL for the duration of a CDLL call.
        fn(_address(luma), _address(scratch), rows, cols, *(small + o for o in offsets),
           *(base + 2 * _WORDS * v for v in range(_VARIANTS)), ctypes.byref(quality))  # fmt: skip
        return words, quality.value

    return run


def _from_binding(rgb: U8) -> tuple[Words, int]:
    vectors, quality = pdqhash.compute_dihedral(rgb)
    # The binding's bit vectors are most significant bit first: back to 16 words, w[0] last.
    packed = np.packbits(np.asarray(vectors, dtype=np.uint8), axis=1)
    words = packed.view(">u2")[:, ::-1].astype(np.uint16)
    return words, int(quality)


_native = _load_native()
if _native is None:
    log.warning("pdqhash exports no %s: PDQ hashes are computed holding the GIL", _SYMBOL)


def dihedral_words(rgb: U8) -> tuple[Words, int]:
    """The 8 dihedral PDQ hashes (pdqhash's order) as 16-bit words, and the quality (0-100),
    of a C-contiguous (rows, cols, 3) uint8 RGB array."""
    if _native is None:
        return _from_binding(rgb)
    return _native(rgb)


def to_bytes(words: Words) -> list[bytes]:
    """Each variant's 32 bytes, most significant word first: the reference hashers' hex."""
    return [row[::-1].astype(">u2").tobytes() for row in words]
