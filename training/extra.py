"""Human labels from the review console as extra training photos (`prepare --extra DIR`).

`modq reviews export --out DIR` writes `DIR/train/<category>/*.jpg`: photos of listings a
moderator re-categorised (under the corrected category) or approved as declared. They join
the train split only (val stays the curated listings-v1 val, so metrics stay comparable);
a category the dataset does not have is left out with the reason. `DIR/banned/<label>/`
(rejected banned items) is for the prohibited-items head and is not read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training import TrainingError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def extra_photos(
    dirs: Sequence[Path], labels: Sequence[str]
) -> tuple[list[tuple[Path, str, str]], list[dict[str, str]]]:
    """(path, "train", label) jobs for the photos of each export, and what was left out."""
    jobs: list[tuple[Path, str, str]] = []
    excluded: list[dict[str, str]] = []
    known = set(labels)
    for folder in dirs:
        train = Path(folder).resolve() / "train"
        if not train.is_dir():
            raise TrainingError(f"{train} is missing: is {folder} a `modq reviews export` folder?")
        for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
            photos = sorted(
                p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if class_dir.name not in known:
                excluded += [
                    {"path": str(p), "reason": f"human label {class_dir.name!r} not a category"}
                    for p in photos
                ]
                continue
            jobs += [(p, "train", class_dir.name) for p in photos]
    return jobs, excluded
