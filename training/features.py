"""Cache of trunk outputs: the only full-network passes a training run makes.

On a CPU the frozen trunk is nearly all of the cost, so it runs once per photo and view:
view 0 is the evaluation transform (the worker's preprocessing), views 1..K are seeded
augmentations. Both training phases then read these tensors (float16 on disk, memory
mapped). The cache is keyed on everything that changes its content and reused when a run
is repeated with other head or fine-tuning settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from modq.domain.preprocess import PreprocessSpec
from training.data import Item
from training.export import module_session
from training.transforms import TrainAugment, eval_array, load_photo

SMALL = 256


@dataclass(frozen=True)
class ViewKey:
    """What identifies a cache file: the trunk, the photos and the augmentation seeds."""

    arch: str
    weights: str
    tail_blocks: int
    spec: PreprocessSpec
    seed: int

    def digest(self, items: list[Item], views: int) -> str:
        doc = {
            "arch": self.arch,
            "weights": self.weights,
            "tail_blocks": self.tail_blocks,
            "spec": self.spec.model_dump(),
            "seed": self.seed,
            "views": views,
            "items": [f"{it.path}:{it.sha256}" for it in items],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class _Views(Dataset[tuple[int, npt.NDArray[np.float32]]]):
    def __init__(self, root: Path, items: list[Item], views: int, spec: PreprocessSpec, seed: int):
        self.root, self.items, self.views, self.spec, self.seed = root, items, views, spec, seed
        self.augment = TrainAugment(spec)

    def __len__(self) -> int:
        return len(self.items) * self.views

    def __getitem__(self, index: int) -> tuple[int, npt.NDArray[np.float32]]:
        item_idx, view = divmod(index, self.views)
        path = self.root / self.items[item_idx].path
        if view == 0:
            return index, eval_array(path, self.spec)
        img = load_photo(path, self.spec)
        # Seed from the file's content hash: the same photo gets the same views on every run.
        seed = int(self.items[item_idx].sha256[:8], 16) ^ (self.seed * 1_000_003 + view)
        return index, self.augment(img, seed)


def trunk_features(
    trunk: torch.nn.Module,
    root: Path,
    items: list[Item],
    views: int,
    key: ViewKey,
    cache_dir: Path,
    name: str,
    *,
    batch_size: int = 16,
    workers: int = 1,
) -> npt.NDArray[np.float16]:
    """Array [len(items), views, C, H, W] of trunk outputs, computed or read from cache."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = key.digest(items, views)
    path = cache_dir / f"{name}-{digest}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")

    sess = module_session(trunk, key.spec.input_size, cache_dir / f"trunk-{digest}.onnx")
    dataset = _Views(root, items, views, key.spec, key.seed)
    if len(dataset) < SMALL:
        workers = 0  # starting a worker process costs more than decoding a few photos
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=False,
        multiprocessing_context="spawn" if workers else None,
    )
    out: Any = None
    tmp = path.with_suffix(".partial.npy")
    bar = tqdm(loader, desc=f"trunk features: {name} ({views} view(s))", unit="batch")
    for indices, arrays in bar:
        h = sess.run(None, {"image": arrays.numpy()})[0].astype(np.float16)
        if out is None:
            shape = (len(items), views, *h.shape[1:])
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        idx = indices.numpy()
        out[idx // views, idx % views] = h
    if out is None:
        raise ValueError(f"no photos to cache for {name}")
    out.flush()
    del out
    tmp.rename(path)
    return np.load(path, mmap_mode="r")
