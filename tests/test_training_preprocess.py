"""Training's evaluation transform is the worker's preprocessing, pixel for pixel (real photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modq.domain.preprocess import PreprocessSpec, preprocess, resize_and_crop
from modq.pipeline.decode import decode_image
from modq.settings import Settings
from training.data import Item
from training.evaluate import _EvalPhotos
from training.features import _Views
from training.transforms import TrainAugment, eval_array


@pytest.fixture(scope="module")
def photos(datasets_dir: Path) -> list[Path]:
    """Two val photos of every listings-v1 category (all sizes and sources)."""
    val = datasets_dir / "listings-v1" / "val"
    picked = [p for d in sorted(val.iterdir()) for p in sorted(d.glob("*.jpg"))[:2]]
    assert len(picked) == 30
    return picked


def _worker(path: Path, spec: PreprocessSpec) -> np.ndarray:
    data = path.read_bytes()
    return preprocess(decode_image(data, spec, Settings().max_image_pixels), spec)


def _items(photos: list[Path], root: Path) -> list[Item]:
    return [
        Item("val", p.parent.name, str(p.relative_to(root)), "0" * 64, "0" * 16, 0, 0, "RGB")
        for p in photos
    ]


def test_eval_transform_equals_worker_preprocessing(photos: list[Path]) -> None:
    spec = PreprocessSpec()
    for path in photos:
        ours, theirs = eval_array(path, spec), _worker(path, spec)
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
        assert np.array_equal(ours, theirs), path


def test_datasets_feeding_the_network_use_the_worker_preprocessing(
    photos: list[Path], datasets_dir: Path
) -> None:
    """What evaluation and the cached plain view (view 0) hand to the network."""
    root = datasets_dir / "listings-v1"
    spec = PreprocessSpec()
    items = _items(photos, root)
    evaluated = _EvalPhotos(root, items, spec)
    cached = _Views(root, items, views=2, spec=spec, seed=0)
    for i, path in enumerate(photos):
        expected = _worker(path, spec)
        assert np.array_equal(evaluated[i], expected)
        index, plain = cached[i * 2]
        assert index == i * 2 and np.array_equal(plain, expected)
        _, augmented = cached[i * 2 + 1]
        assert augmented.shape == expected.shape and not np.array_equal(augmented, expected)


def test_other_spec_numbers_follow_through(photos: list[Path]) -> None:
    spec = PreprocessSpec(resize=256, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    for path in photos[:6]:
        assert np.array_equal(eval_array(path, spec), _worker(path, spec))


def test_augmentation_normalises_with_the_worker_numbers(photos: list[Path]) -> None:
    """With the random parts switched off, a training view is the worker's input exactly."""
    spec = PreprocessSpec()
    augment = TrainAugment(spec, noise_std=0.0)
    augment.geometric = lambda img: resize_and_crop(img, spec)  # type: ignore[assignment]
    augment.colour = lambda img: img  # type: ignore[assignment]
    for path in photos[:6]:
        img = decode_image(path.read_bytes(), spec, Settings().max_image_pixels)
        assert np.array_equal(augment(img, seed=1), _worker(path, spec))


def test_augmented_views_are_reproducible(photos: list[Path]) -> None:
    spec = PreprocessSpec()
    img = Image.open(photos[0]).convert("RGB")
    a, b = TrainAugment(spec)(img, seed=7), TrainAugment(spec)(img, seed=7)
    c = TrainAugment(spec)(img, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (3, 224, 224) and a.dtype == np.float32
