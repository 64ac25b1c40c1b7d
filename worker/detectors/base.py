"""The detector interface: a batch of decoded photos in, per-photo label scores out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image


class Detector(Protocol):
    """Runs on the RGB photos of a batch (shorter side >= the model input, or `min_side`).

    `score` returns one entry per photo, in order: label scores in [0, 1], or the exception
    that photo raised, so one bad photo never costs the batch its other results.
    """

    name: str
    labels: tuple[str, ...]
    min_side: int

    def score(self, images: Sequence[Image.Image]) -> list[dict[str, float] | Exception]: ...
