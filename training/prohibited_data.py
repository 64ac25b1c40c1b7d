"""The prohibited-items data sets as modq-train reads them: labelled photo folders, the YOLO
boxes of prohibited-v2 (square crops around them, object size buckets) and where each photo
came from (prohibited-v1 vs the new photos)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from training import TrainingError


@dataclass(frozen=True)
class Photos:
    paths: list[Path]
    labels: list[str]


def list_labelled_photos(root: Path, split: str, benign_as: str | None = None) -> Photos:
    """Every photo of `root/split/<label>/`; `benign_as` relabels all of them (listings-v1)."""
    base = root / split
    if not base.is_dir():
        raise TrainingError(f"{base} does not exist")
    paths, labels = [], []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.jpg")):
            paths.append(path)
            labels.append(benign_as or folder.name)
    if not paths:
        raise TrainingError(f"no photos under {base}")
    return Photos(paths, labels)


# prohibited-v2's YOLO classes (boxes/<split>/<label>/<stem>.txt): handgun, long gun, knife,
# cigarette, mapped onto the policy labels.
BOX_LABELS = ("firearm", "firearm", "knife", "tobacco")
# A crop is the square around a box, `context` times the box's longer side (clipped to the
# photo), so the head also learns the object when it fills the frame, as in a product shot.
CROP_CONTEXTS = (1.25, 2.0)


@dataclass(frozen=True)
class Crop:
    parent: int  # index of the photo in its `Photos`
    label: str
    box: tuple[float, float, float, float]  # x_center, y_center, width, height (0-1)
    context: float


def scan_boxes(root: Path, split: str, photos: Photos, labels: list[str]) -> list[Crop]:
    """One crop per box and context for every photo that has a box file (prohibited-v2)."""
    crops = []
    for i, path in enumerate(photos.paths):
        box_file = root / "boxes" / split / path.parent.name / f"{path.stem}.txt"
        if not box_file.is_file():
            continue
        for line in box_file.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5 or not parts[0].isdigit() or int(parts[0]) >= len(BOX_LABELS):
                continue
            label = BOX_LABELS[int(parts[0])]
            if label not in labels:
                continue
            xc, yc, w, h = (float(v) for v in parts[1:])
            crops.extend(Crop(i, label, (xc, yc, w, h), c) for c in CROP_CONTEXTS)
    return crops


def object_size(root: Path, split: str, path: Path) -> float | None:
    """Area share of the photo's largest box, or None when the photo has no box file."""
    box_file = root / "boxes" / split / path.parent.name / f"{path.stem}.txt"
    if not box_file.is_file():
        return None
    areas = [
        float(parts[3]) * float(parts[4])
        for parts in (line.split() for line in box_file.read_text().splitlines())
        if len(parts) == 5
    ]
    return max(areas, default=0.0)


# Largest box's share of the photo: a product shot fills the frame, a scene shows the item small.
SIZE_BUCKETS = ((0.25, "product-like (object >= 25% of photo)"),
                (0.05, "close/in hand (5-25%)"), (0.0, "scene (object < 5%)"))  # fmt: skip


def size_bucket(size: float | None) -> str:
    if size is None:
        return "no boxes"
    return next(name for floor, name in SIZE_BUCKETS if size >= floor)


def photo_origins(root: Path, split: str, photos: Photos) -> list[str]:
    """The collection each photo came from (prohibited-v2 manifest.csv `origin`), or '?'."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return ["?"] * len(photos.paths)
    with manifest.open(newline="") as fh:
        origin = {row["file"]: row["origin"] for row in csv.DictReader(fh)}
    return [origin.get(f"{split}/{p.parent.name}/{p.name}", "?") for p in photos.paths]


def crop_square(
    img: Image.Image, box: tuple[float, float, float, float], context: float
) -> Image.Image:
    """The square of side `context` x the box's longer side around its centre, inside the photo."""
    width, height = img.size
    xc, yc, w, h = box
    side = min(max(w * width, h * height) * context, width, height)
    side = max(side, 8.0)
    left = min(max(xc * width - side / 2, 0.0), width - side)
    top = min(max(yc * height - side / 2, 0.0), height - side)
    size = round(side)
    x0, y0 = min(round(left), width - size), min(round(top), height - size)
    return img.crop((x0, y0, x0 + size, y0 + size))
