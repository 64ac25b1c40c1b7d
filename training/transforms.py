"""Photo → tensor, for evaluation (exactly the worker's preprocessing) and for training.

Evaluation does not re-implement anything: it calls `modq.pipeline.decode.decode_image` and
`modq.domain.preprocess.preprocess`, the functions the worker runs in production. Training
augments the decoded PIL image with torchvision (random resized crop, flip, small rotation,
colour jitter), normalises with the worker's own `normalise`, then adds a little noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torchvision import transforms as T

from modq.domain.preprocess import PreprocessSpec, normalise, preprocess
from modq.pipeline.decode import decode_image

DEFAULT_MAX_PIXELS = 50_000_000


def load_photo(
    path: Path, spec: PreprocessSpec, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode a photo file exactly as the worker decodes fetched bytes."""
    return decode_image(Path(path).read_bytes(), spec, max_pixels)


def eval_array(path: Path, spec: PreprocessSpec) -> npt.NDArray[np.float32]:
    """The evaluation transform: byte-for-byte the worker's decode + preprocess."""
    return preprocess(load_photo(path, spec), spec)


class TrainAugment:
    """Random view of a photo for training; deterministic for a given `torch.Generator` seed."""

    def __init__(self, spec: PreprocessSpec, noise_std: float = 0.03) -> None:
        self.spec = spec
        self.noise_std = noise_std
        size = spec.input_size
        self.geometric = T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
                T.RandomHorizontalFlip(),
                T.RandomRotation(10, fill=(255, 255, 255)),
            ]
        )
        self.colour = T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03)

    def __call__(self, img: Image.Image, seed: int) -> npt.NDArray[np.float32]:
        # torchvision draws from torch's global RNG: seed it per view so every view is
        # reproducible whatever process or order produces it.
        torch.manual_seed(seed)
        img = self.colour(self.geometric(img))
        arr = normalise(img, self.spec)
        if self.noise_std > 0:
            rng = np.random.default_rng(seed)
            arr += rng.normal(0.0, self.noise_std, size=arr.shape).astype(np.float32)
        return arr
