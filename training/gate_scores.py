"""Scores of one model on labelled photos through the worker's own path, cached per model.

`modq-train compare` (training/compare.py) needs, for the shipped model and a candidate, what
a worker would compute for every labelled photo: the category probabilities and the heads'
scores (the prohibited head lives in the category graph). They come from
`modq.pipeline.photos.infer_photos` (the worker's thread-pool decode sized by declared
category, its preprocessing, one ONNX Runtime session with the worker's session options)
with the model file served exactly as given: an int8 copy is scored as int8. Scores are
cached in `<cache>/<model sha256>-<photo list sha256>.npz`, so a re-run costs nothing and a
changed file or photo list is never served stale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from modq.domain.provenance import sha256_of
from modq.errors import PhotoFetchError
from modq.pipeline.photos import infer_photos
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from training import TrainingError
from training.prohibited_oof import F32, load_oof, photo_name

# Listings declare their own category; prohibited photos a category no exception applies to
# (as bench/bench_false_positives.py does).
PROHIBITED_DECLARED = "other.unknown"
LISTINGS, PROHIBITED = "listings-v1", "prohibited-v2"
CHUNK = 512


@dataclass(frozen=True)
class Photos:
    """Labelled photos: `dataset` is LISTINGS or PROHIBITED, `declared` the category a
    worker is told."""

    paths: list[Path]
    labels: list[str]
    dataset: list[str]
    declared: list[str]

    def digest(self) -> str:
        # Dataset-relative names: the same digest on any machine.
        names = [
            f"{'/'.join(p.parts[-4:])}|{d}" for p, d in zip(self.paths, self.declared, strict=True)
        ]
        return hashlib.sha256("\n".join(names).encode()).hexdigest()


@dataclass(frozen=True)
class Scores:
    """One model's outputs on `Photos`, row for row; `ok` is False where a photo could not
    be read (its rows are zeros)."""

    model_version: str
    labels: list[str]
    probs: npt.NDArray[np.float32]
    head_keys: list[str]
    heads: npt.NDArray[np.float32]
    ok: npt.NDArray[np.bool_]

    def detectors(self, i: int) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.head_keys, self.heads[i], strict=True)}


def labelled_photos(datasets: Path, splits: list[str]) -> Photos:
    """listings-v1 and (where present) prohibited-v2 photos of `splits`, sorted."""
    paths: list[Path] = []
    labels: list[str] = []
    dataset: list[str] = []
    declared: list[str] = []
    for name in (LISTINGS, PROHIBITED):
        for split in splits:
            for path in sorted((datasets / name / split).glob("*/*.jpg")):
                paths.append(path)
                labels.append(path.parent.name)
                dataset.append(name)
                declared.append(path.parent.name if name == LISTINGS else PROHIBITED_DECLARED)
    return Photos(paths, labels, dataset, declared)


def _read(ref: str) -> bytes:
    try:
        return Path(ref).read_bytes()
    except OSError as exc:
        raise PhotoFetchError(f"cannot read {ref}: {exc.strerror}") from exc


def score(model: Path, photos: Photos, settings: Settings, cache: Path) -> Scores:
    """`model`'s scores on `photos` (from `cache` when this file already scored this list)."""
    cached = cache / f"{sha256_of(model)[:20]}-{photos.digest()[:20]}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return Scores(
                str(z["model_version"]),
                [str(s) for s in z["labels"]],
                z["probs"],
                [str(s) for s in z["head_keys"]],
                z["heads"],
                z["ok"],
            )
    # The file as given (no int8 swap), one ONNX thread: the machine is shared.
    served = settings.model_copy(
        update={
            "model_path": model,
            "classifier_precision": "fp32",
            "detectors": [],
            "intra_op_threads": 1,
        }
    )
    rt = Runtime.build(served, read=_read, detectors=[])
    labels = list(rt.classifier.contract.labels)
    keys = [
        f"{name}.{label}"
        for name, head in rt.classifier.contract.detectors.items()
        for label in head.labels
    ]
    probs = np.zeros((len(photos.paths), len(labels)), np.float32)
    heads = np.zeros((len(photos.paths), len(keys)), np.float32)
    ok = np.zeros(len(photos.paths), bool)
    try:
        with tqdm(total=len(photos.paths), desc=f"scoring {model.name}", unit="photo") as bar:
            for start in range(0, len(photos.paths), CHUNK):
                refs = [str(p) for p in photos.paths[start : start + CHUNK]]
                cats = photos.declared[start : start + CHUNK]
                for pos, out in infer_photos(refs, rt, cats):
                    i = start + pos
                    if out.probs is not None:
                        ok[i] = True
                        probs[i] = out.probs
                        heads[i] = [out.detectors.get(k, 0.0) for k in keys]
                    bar.update(1)
        version = rt.classifier.contract.model_version
    finally:
        rt.close()
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        cached,
        model_version=version,
        labels=np.array(labels),
        probs=probs,
        head_keys=np.array(keys, dtype=str),
        heads=heads,
        ok=ok,
    )
    return Scores(version, labels, probs, keys, heads, ok)


@dataclass(frozen=True)
class Rows:
    """Which photos each part of the gate may count: `category` (category rows, listings)
    and `heads` (prohibited labels, benign flags, listings)."""

    category: npt.NDArray[np.bool_]
    heads: npt.NDArray[np.bool_]
    note: str


def _with_oof(s: Scores, photos: Photos, oof: tuple[dict[str, int], list[str], F32]) -> Scores:
    rows, keys, values = oof
    missing = sorted(set(s.head_keys) - set(keys))
    if missing:
        raise TrainingError(f"out-of-fold scores lack {missing}")
    cols = [keys.index(k) for k in s.head_keys]
    heads = s.heads.copy()
    for i, path in enumerate(photos.paths):
        j = rows.get(photo_name(path))
        if j is not None:
            heads[i] = values[j, cols]
    return replace(s, heads=heads)


def out_of_fold(
    photos: Photos, a: Scores, b: Scores, models: tuple[Path, Path], folder: Path
) -> tuple[Scores, Scores, Rows]:
    """Both models' head scores on train photos replaced by their out-of-fold scores.

    A train photo counts for the heads only where both models have an out-of-fold score for
    it, and for the category (and the simulated listings) only where both models' category
    outputs are identical on every train photo: a head-only change. No out-of-fold category
    scores exist, and in-sample ones would flatter whichever model was trained on them.
    """
    loaded = [load_oof(m, folder) for m in models]
    missing = [str(m) for m, o in zip(models, loaded, strict=True) if o is None]
    if missing:
        raise TrainingError(
            f"no out-of-fold scores in {folder} for {', '.join(missing)}: add-prohibited-head "
            "writes them for the file it writes; for a shipped file, `modq-train prohibited-oof "
            "--model FILE` refits its recipe"
        )
    oa, ob = (o for o in loaded if o is not None)
    train = np.array([p.parts[-3] == "train" for p in photos.paths])
    names = [photo_name(p) for p in photos.paths]
    covered = train & np.array([n in oa[0] and n in ob[0] for n in names])
    same_category = bool(np.array_equal(a.probs[train], b.probs[train]))
    heads = ~train | covered
    category = ~train | (covered if same_category else np.zeros_like(train))
    note = (
        f"{int(covered.sum())} of {int(train.sum())} train photos by out-of-fold head scores; "
        + (
            "category outputs identical on train, so they count there too"
            if same_category
            else "category outputs differ on train: category rows and listings on val only"
        )
    )
    return _with_oof(a, photos, oa), _with_oof(b, photos, ob), Rows(category, heads, note)
