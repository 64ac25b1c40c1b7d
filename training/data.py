"""`prepare`: check a folder of labelled photos and write the manifest training reads.

Layout: `<root>/{train,val}/<category>/*.jpg`. Every photo is decoded with the worker's own
decoder (so what trains is what serves), hashed (SHA-256 for exact and perceptual hash for
near duplicates) and listed in `manifest.json`. Nothing in the source folder is changed or
deleted: photos that must not be used are left out of the manifest, with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from modq.domain.preprocess import PreprocessSpec
from modq.errors import PhotoError
from modq.pipeline.decode import decode_image
from modq.settings import Settings
from training import TrainingError
from training.extra import extra_photos

SPLITS = ("train", "val")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
MANIFEST = "manifest.json"


@dataclass
class Item:
    split: str
    label: str
    path: str  # relative to the dataset root
    sha256: str
    phash: str
    width: int
    height: int
    mode: str
    group: int = -1  # near-duplicate cluster id: one cluster never straddles train/holdout


@dataclass
class Manifest:
    root: str
    labels: list[str]
    items: list[Item]
    excluded: list[dict[str, str]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    data_hash: str = ""

    def split(self, name: str) -> list[Item]:
        return [item for item in self.items if item.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            counter = Counter(item.label for item in self.split(name))
            out[name] = {label: counter.get(label, 0) for label in self.labels}
        return out

    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / MANIFEST
        doc = asdict(self)
        doc["counts"] = self.counts()
        path.write_text(json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, out_dir: Path) -> Manifest:
        path = out_dir / MANIFEST
        if not path.is_file():
            raise TrainingError(f"{path} not found: run `modq-train prepare` first")
        doc = json.loads(path.read_text())
        doc.pop("counts", None)
        doc["items"] = [Item(**item) for item in doc["items"]]
        return cls(**doc)


def scan(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {label: [photo paths]}}, refusing layouts training cannot use."""
    if not root.is_dir():
        raise TrainingError(f"dataset folder {root} does not exist or is not a folder")
    found: dict[str, dict[str, list[Path]]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise TrainingError(f"{split_dir} is missing: expected {root}/{split}/<category>/*.jpg")
        try:
            class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
        except OSError as exc:
            raise TrainingError(f"cannot read folder {split_dir}: {exc}") from exc
        if not class_dirs:
            raise TrainingError(f"{split_dir} has no category folders")
        found[split] = {}
        for class_dir in class_dirs:
            try:
                photos = sorted(
                    p
                    for p in class_dir.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
            except OSError as exc:
                raise TrainingError(f"cannot read folder {class_dir}: {exc}") from exc
            found[split][class_dir.name] = photos
    train_labels, val_labels = set(found["train"]), set(found["val"])
    if train_labels != val_labels:
        raise TrainingError(
            "train and val must have the same category folders; only in train: "
            f"{sorted(train_labels - val_labels)}, only in val: {sorted(val_labels - train_labels)}"
        )
    empty = [f"{split}/{label}" for split in SPLITS for label, ps in found[split].items() if not ps]
    if empty:
        raise TrainingError(f"empty categories (no photos): {', '.join(empty)}")
    _check_categories_file(root, train_labels)
    return found


def _check_categories_file(root: Path, labels: set[str]) -> None:
    """When the dataset lists its categories, every listed one must have photos."""
    listed = set(_listed_categories(root))
    if listed and listed != labels:
        raise TrainingError(
            f"{root / 'categories.json'} lists categories without a folder: "
            f"{sorted(listed - labels)}; folders not in it: {sorted(labels - listed)}"
        )


def _listed_categories(root: Path) -> list[str]:
    path = root / "categories.json"
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()).get("categories", {}))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise TrainingError(f"{path} is not a valid categories file: {exc}") from exc


def label_order(root: Path, labels: set[str]) -> list[str]:
    """The model's output order: as categories.json lists them, else alphabetical."""
    listed = _listed_categories(root)
    return listed if set(listed) == labels else sorted(labels)


def _check_photo(job: tuple[Path, int]) -> tuple[Path, dict[str, Any] | str]:
    """Decode one photo as the worker would; hashes, or the reason it is unusable."""
    path, max_pixels = job
    try:
        data = path.read_bytes()
        img = decode_image(data, PreprocessSpec(), max_pixels)
    except (OSError, PhotoError) as exc:
        return path, f"{type(exc).__name__}: {exc}"
    with Image.open(io.BytesIO(data)) as raw:
        original_mode = str(raw.mode)  # decode_image already converted to RGB
    return path, {
        "sha256": hashlib.sha256(data).hexdigest(),
        "phash": str(imagehash.phash(img)),
        "width": img.width,
        "height": img.height,
        "mode": original_mode,
    }


def near_duplicate_pairs(hashes: list[str], max_distance: int) -> list[tuple[int, int, int]]:
    """(i, j, hamming distance) for i < j whose 64-bit perceptual hashes are within reach."""
    if not hashes:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    pairs: list[tuple[int, int, int]] = []
    chunk = 512
    for start in range(0, len(values), chunk):
        block = values[start : start + chunk, None] ^ values[None, :]
        dist = np.bitwise_count(block)
        rows, cols = np.nonzero(dist <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                pairs.append((i, c, int(dist[r, c])))
    return pairs


def _groups(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return [find(i) for i in range(n)]


def prepare(
    root: Path,
    out_dir: Path,
    *,
    near_distance: int = 4,
    exclude_leaked: bool = False,
    workers: int = 2,
    settings: Settings | None = None,
    extra: Sequence[Path] = (),
) -> Manifest:
    """Check every photo under `root` (and the train photos of the `extra` human-label
    exports, see training/extra.py), write `out_dir/manifest.json` and return it."""
    settings = settings or Settings()
    root = root.resolve()
    found = scan(root)
    labels = label_order(root, set(found["train"]))
    jobs = [
        (path, split, label) for split in SPLITS for label in labels for path in found[split][label]
    ]
    extra_jobs, extra_excluded = extra_photos(extra, labels)
    jobs += extra_jobs
    results: dict[Path, dict[str, Any] | str] = {}
    args = [(p, settings.max_image_pixels) for p, _, _ in jobs]
    with contextlib.ExitStack() as stack:
        stream: Iterator[tuple[Path, dict[str, Any] | str]]
        if workers > 1 and len(jobs) >= 256:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            stream = pool.imap(_check_photo, args, 16)
        else:  # a few photos decode faster than worker processes start
            stream = map(_check_photo, args)
        for path, result in tqdm(
            stream, total=len(jobs), desc="prepare: decode+hash", unit="photo"
        ):
            results[path] = result

    items: list[Item] = []
    excluded: list[dict[str, str]] = list(extra_excluded)
    for path, split, label in jobs:
        res = results[path]
        # Extra photos live outside the dataset: kept absolute (root / absolute = absolute).
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        if isinstance(res, str):
            excluded.append({"path": rel, "reason": f"unreadable: {res}"})
        else:
            items.append(Item(split=split, label=label, path=rel, **res))

    items, dup_excluded = _drop_exact_duplicates(items)
    excluded += dup_excluded
    pairs = near_duplicate_pairs([it.phash for it in items], near_distance)
    leaks = [(i, j, d) for i, j, d in pairs if items[i].split != items[j].split]
    if leaks and not exclude_leaked:
        sample = "; ".join(
            f"{items[i].path} ~ {items[j].path} (distance {d})" for i, j, d in leaks[:5]
        )
        raise TrainingError(
            f"train/val leakage: {len(leaks)} photo pairs are the same or nearly the same picture "
            f"across splits, e.g. {sample}. Remove them from one split, or pass --exclude-leaked "
            "to leave the train copies out of the manifest (the source folder is not touched)."
        )
    leaked = {i if items[i].split == "train" else j for i, j, _ in leaks}
    for i in sorted(leaked):
        excluded.append({"path": items[i].path, "reason": "near duplicate of a val photo"})
    near = [
        {"a": items[i].path, "b": items[j].path, "distance": d}
        for i, j, d in pairs
        if items[i].split == items[j].split
    ]
    group_of = _groups(len(items), [(i, j) for i, j, _ in pairs])
    for i, item in enumerate(items):
        item.group = group_of[i]
    items = [item for i, item in enumerate(items) if i not in leaked]

    manifest = Manifest(str(root), labels, items, excluded, near, data_hash(items))
    empty = [
        f"{s}/{lbl}" for s, per in manifest.counts().items() for lbl, n in per.items() if n == 0
    ]
    if empty:
        raise TrainingError(f"no usable photos left in: {', '.join(empty)} (see problems above)")
    manifest.save(out_dir)
    return manifest


def _drop_exact_duplicates(items: list[Item]) -> tuple[list[Item], list[dict[str, str]]]:
    """Within a split keep one copy of byte-identical files; drop all of a labelling conflict.

    Byte-identical files across splits are left in: they are leakage, caught next.
    """
    by_key: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item in items:
        by_key[item.split, item.sha256].append(item)
    drop: set[str] = set()
    excluded: list[dict[str, str]] = []
    for copies in by_key.values():
        if len(copies) < 2:
            continue
        if len({c.label for c in copies}) > 1:
            names = ", ".join(c.path for c in copies)
            for c in copies:
                drop.add(c.path)
                excluded.append({"path": c.path, "reason": f"same file, different labels: {names}"})
        else:
            for c in copies[1:]:
                drop.add(c.path)
                excluded.append({"path": c.path, "reason": f"exact duplicate of {copies[0].path}"})
    return [it for it in items if it.path not in drop], excluded


def data_hash(items: list[Item]) -> str:
    """SHA-256 of the training data listing (split/label/file and content hash, sorted)."""
    lines = sorted(f"{it.path}\t{it.label}\t{it.sha256}" for it in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def holdout_split(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Carve a stratified held-out part from train, keeping near-duplicate clusters together."""
    rng = np.random.default_rng(seed)
    train: list[Item] = []
    held: list[Item] = []
    by_label: dict[str, dict[int, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        by_label[item.label][item.group].append(item)
    for label in sorted(by_label):
        groups = [by_label[label][g] for g in sorted(by_label[label])]
        order = rng.permutation(len(groups))
        total = sum(len(g) for g in groups)
        want = round(total * fraction) if fraction > 0 else 0
        taken = 0
        for k in order:
            if taken < want and total - taken - len(groups[k]) > 0:
                held += groups[k]
                taken += len(groups[k])
            else:
                train += groups[k]
    return train, held


def report(manifest: Manifest) -> str:
    """Human-readable summary: class counts and problems."""
    counts = manifest.counts()
    width = max(len(label) for label in manifest.labels)
    lines = [f"{'category':<{width}}  {'train':>6}  {'val':>5}"]
    for label in manifest.labels:
        lines.append(f"{label:<{width}}  {counts['train'][label]:>6}  {counts['val'][label]:>5}")
    lines.append(
        f"{'total':<{width}}  {sum(counts['train'].values()):>6}  {sum(counts['val'].values()):>5}"
    )
    reasons = Counter(e["reason"].split(":")[0].split(" of ")[0] for e in manifest.excluded)
    lines.append(f"left out of the manifest: {len(manifest.excluded)} {dict(reasons) or ''}")
    for entry in manifest.excluded[:10]:
        lines.append(f"  {entry['path']}: {entry['reason']}")
    lines.append(
        f"near-duplicate pairs within a split (kept, grouped): {len(manifest.near_duplicates)}"
    )
    lines.append(f"data hash: {manifest.data_hash}")
    return "\n".join(lines)
