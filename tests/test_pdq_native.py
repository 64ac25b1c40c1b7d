"""The GIL-free PDQ call (`modq.detectors.pdq_native`) against pdqhash's own binding.

Same hashes and quality, bit for bit, on dataset photos at the size the worker hashes them;
the fallback agrees too; and the native call really lets other threads run.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image

from modq.detectors import pdq_native
from modq.detectors.hashing import hash_size, pdq_hash, reference_rgb

U8 = np.typing.NDArray[np.uint8]


def _binding(rgb: U8) -> tuple[list[bytes], int]:
    vectors, quality = pdqhash.compute_dihedral(rgb)
    return [np.packbits(np.asarray(v, dtype=np.uint8)).tobytes() for v in vectors], int(quality)


def _hashed_pixels(path: Path) -> U8:
    img = reference_rgb(Image.open(path))
    size = hash_size(*img.size)
    if size != img.size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


@pytest.fixture(scope="module")
def photos(datasets_dir: Path) -> list[U8]:
    """Every category of listings-v1 val and every class of prohibited-v2 val (JPEG and PNG)."""
    paths: list[Path] = []
    for root in (datasets_dir / "listings-v1" / "val", datasets_dir / "prohibited-v2" / "val"):
        for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
            files = sorted(f for f in folder.iterdir() if f.suffix in (".jpg", ".jpeg", ".png"))
            paths += files[:8]
    assert len(paths) >= 150
    return [_hashed_pixels(p) for p in paths]


def test_the_wheel_exports_the_function() -> None:
    # If a pdqhash release stops exporting it, hashing still works (the binding) but holds
    # the GIL again: this test says so rather than letting throughput drop unnoticed.
    assert pdq_native._native is not None


def test_native_hashes_and_quality_equal_the_binding(photos: list[U8]) -> None:
    for rgb in photos:
        words, quality = pdq_native.dihedral_words(rgb)
        assert (pdq_native.to_bytes(words), quality) == _binding(rgb)


def test_the_fallback_gives_the_same_words(photos: list[U8]) -> None:
    for rgb in photos[:20]:
        native_words, native_quality = pdq_native.dihedral_words(rgb)
        words, quality = pdq_native._from_binding(rgb)
        assert np.array_equal(words, native_words) and quality == native_quality


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 200, 3), (64, 64, 3), (513, 97, 3)])
def test_odd_sizes_agree(shape: tuple[int, int, int]) -> None:
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    words, quality = pdq_native.dihedral_words(rgb)
    assert (pdq_native.to_bytes(words), quality) == _binding(rgb)


def test_pdq_hash_uses_it(photos: list[U8]) -> None:
    digest = pdq_hash(Image.fromarray(photos[0]))
    hashes, quality = _binding(photos[0])
    assert (digest.hex, digest.quality, list(digest.dihedral)) == (hashes[0].hex(), quality, hashes)


@pytest.mark.integration  # seconds of hashing and timing-sensitive: kept out of make test-fast
def test_other_threads_run_while_a_hash_is_computed() -> None:
    """Python code on another thread makes progress during the C++ call (the binding would
    hold the GIL for all of it: the counter would stay near zero)."""
    rgb = np.random.default_rng(0).integers(0, 256, (4000, 4000, 3), dtype=np.uint8)
    luma_done, finished = threading.Event(), threading.Event()
    original = pdq_native._luma

    def luma(arr: U8) -> np.typing.NDArray[np.float32]:
        out = original(arr)
        luma_done.set()  # what follows is the native call
        return out

    pdq_native._luma = luma
    try:
        worker = threading.Thread(
            target=lambda: (pdq_native.dihedral_words(rgb), finished.set()), daemon=True
        )
        worker.start()
        assert luma_done.wait(60)
        spins = 0
        while not finished.is_set():
            spins += 1
        worker.join(60)
    finally:
        pdq_native._luma = original
    assert spins > 1000
