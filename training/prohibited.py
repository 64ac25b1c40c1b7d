"""Prohibited items head: firearm / knife / drugs / tobacco scores inside the shipped ONNX graph.

The shipped model already computes a pooled image embedding (output `embedding`) for its
category head. A linear softmax over (prohibited labels + benign) is fitted on features of
prohibited-v2 train (positives and hard negatives) plus listings-v1 train (ordinary listing
photos as benign), then grafted into the same graph with a new output `prohibited_probs`, and
recorded in the model contract as detector `prohibited`. The features are the embedding, or
(`--features avg+max`, the default) the embedding and the spatial max of the feature map it
pools: ReduceMax → Concat → Gemm → Softmax → Slice. The worker therefore still makes one ONNX
call per batch, and the category outputs stay bit-identical (checked after grafting).
`--crops` also trains on square crops around the YOLO boxes of prohibited-v2.

Thresholds are chosen on out-of-fold scores of the *training* photos (5-fold), never on
validation, and written to the contract's provenance for the policy file. Validation recall
(prohibited-v2 val, per label and per source) and false-positive rates (listings-v1 val, all
benign) are reported by `evaluate_head`.

    modq-train add-prohibited-head --model modq/assets/models/modq-listings.onnx \
        --data ../shared/datasets/prohibited-v2 --benign ../shared/datasets/listings-v1
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image
from tqdm import tqdm

from modq.domain.contract import ModelContract
from modq.domain.preprocess import preprocess
from modq.pipeline.decode import decode_image
from training import TrainingError
from training.prohibited_data import (
    Crop,
    Photos,
    crop_square,
    list_labelled_photos,
    object_size,
    photo_origins,
    scan_boxes,
    size_bucket,
)
from training.prohibited_fit import (
    L2,
    REJECT_FPR,
    REVIEW_FPR,
    choose_thresholds,
    fit_softmax,
    softmax_scores,
)
from training.prohibited_graph import (
    DEFAULT_FEATURES,
    DETECTOR,
    EMBEDDING,
    FEATURES_OUT,
    OUTPUT,
    feature_model,
    graft,
)
from training.prohibited_oof import OOF_DIR, save_oof

BENIGN = "benign"
DEFAULT_LABELS = ("firearm", "knife", "drugs", "tobacco")

F32 = npt.NDArray[np.float32]


def _session(model: Path) -> tuple[ort.InferenceSession, ModelContract]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    contract = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, str(model))
    return session, contract


def run_outputs(
    model: Path, paths: list[Path], outputs: list[str], cache: Path | None = None, batch: int = 64
) -> dict[str, F32]:
    """Named outputs for every photo, through the worker's own decode and preprocessing.

    Cached under `cache` keyed by the model file and the photo list, since a full pass over
    ~10k photos takes minutes on a CPU.
    """
    key = hashlib.sha256(Path(model).read_bytes())
    key.update(json.dumps([str(p) for p in paths] + outputs).encode())
    cached = cache / f"outputs-{key.hexdigest()[:16]}.npz" if cache else None
    if cached and cached.is_file():
        with np.load(cached) as data:
            return {name: data[name] for name in outputs}
    session, contract = _session(model)
    missing = set(outputs) - {o.name for o in session.get_outputs()}
    if missing:
        raise TrainingError(f"{model} has no output(s) {sorted(missing)}")
    spec = contract.preprocess
    parts: dict[str, list[F32]] = {name: [] for name in outputs}
    for start in tqdm(range(0, len(paths), batch), desc=f"running {Path(model).name}"):
        arrays = [
            preprocess(decode_image(p.read_bytes(), spec, 50_000_000), spec)
            for p in paths[start : start + batch]
        ]
        for name, out in zip(
            outputs, session.run(outputs, {contract.input_name: np.stack(arrays)}), strict=True
        ):
            parts[name].append(np.asarray(out, dtype=np.float32))
    result = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **result)  # type: ignore[arg-type]
    return result


def run_crops(
    model: Path,
    photos: Photos,
    crops: list[Crop],
    cache: Path | None = None,
    batch: int = 64,
    output: str = EMBEDDING,
) -> F32:
    """`output` for every crop (photo decoded at full size, then the worker's preprocessing)."""
    key = hashlib.sha256(Path(model).read_bytes())
    crop_list = [[str(photos.paths[c.parent]), c.box, c.context] for c in crops]
    key.update(json.dumps([crop_list, output]).encode())
    cached = cache / f"crops-{key.hexdigest()[:16]}.npy" if cache else None
    if cached and cached.is_file():
        return np.asarray(np.load(cached), np.float32)
    session, contract = _session(model)
    spec = contract.preprocess
    full = spec.model_copy(update={"resize": 1 << 20})  # no draft downscaling: crops need pixels
    parts: list[F32] = []
    decoded: tuple[int, Image.Image] | None = None
    for start in tqdm(range(0, len(crops), batch), desc=f"crops through {Path(model).name}"):
        arrays = []
        for crop in crops[start : start + batch]:
            if decoded is None or decoded[0] != crop.parent:
                path = photos.paths[crop.parent]
                decoded = (crop.parent, decode_image(path.read_bytes(), full, 50_000_000))
            arrays.append(preprocess(crop_square(decoded[1], crop.box, crop.context), spec))
        (out,) = session.run([output], {contract.input_name: np.stack(arrays)})
        parts.append(np.asarray(out, dtype=np.float32))
    result = np.concatenate(parts)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, result)
    return result


def train_head(
    model: Path,
    data: Path,
    benign: Path,
    out: Path,
    labels: list[str],
    cache: Path,
    seed: int = 0,
    features: str = DEFAULT_FEATURES,
    crops: bool = False,
    review_fpr: float = REVIEW_FPR,
    hard_weight: float = 1.0,
    scene_fpr: float | None = None,
    oof_dir: Path | None = OOF_DIR,
) -> dict[str, Any]:
    """Fit, calibrate and graft the head; returns the provenance written to the contract.

    `hard_weight` multiplies the weight of DATA's benign photos (hard negatives: rooms,
    streets, people); `scene_fpr` caps the share of them above each label's review threshold
    (out-of-fold). The out-of-fold scores of the training photos go to `oof_dir` for the
    ship gate (training/prohibited_oof.py)."""
    pro = list_labelled_photos(data, "train")
    unknown = sorted(set(pro.labels) - {*labels, BENIGN})
    if unknown:
        raise TrainingError(f"{data}/train has folders {unknown} that are not in --labels")
    listing = list_labelled_photos(benign, "train", benign_as=BENIGN)
    fmodel = feature_model(model, features, cache / f"features-{features}.onnx")
    boxes = scan_boxes(data, "train", pro, labels) if crops else []
    parts = [
        run_outputs(fmodel, p.paths, [FEATURES_OUT], cache)[FEATURES_OUT] for p in (pro, listing)
    ]
    if boxes:
        parts.append(run_crops(fmodel, pro, boxes, cache, output=FEATURES_OUT))
    x = np.concatenate(parts)
    names = pro.labels + listing.labels + [c.label for c in boxes]
    classes = [*labels, BENIGN]
    y = np.array([classes.index(n) for n in names], np.int64)

    # Thresholds come from out-of-fold scores of every training photo (5-fold), so all
    # ~8,000 benign listing photos calibrate them; the shipped head is then fit on all.
    # A crop is in its photo's fold, so no photo is scored by a head that saw part of it.
    photo_folds = np.random.default_rng(seed).integers(0, 5, len(pro.paths) + len(listing.paths))
    folds = np.concatenate([photo_folds, photo_folds[[c.parent for c in boxes]].astype(np.int64)])
    is_scene = np.zeros(len(y), bool)
    is_scene[: len(pro.paths)] = np.array(pro.labels) == BENIGN
    extra = np.where(is_scene, hard_weight, 1.0) if hard_weight != 1.0 else None
    scores = np.zeros((len(y), len(labels)), np.float32)
    for f in tqdm(range(5), desc="calibrating (5-fold)"):
        fold_extra = extra[folds != f] if extra is not None else None
        w, b = fit_softmax(x[folds != f], y[folds != f], len(classes), L2, extra_weight=fold_extra)
        scores[folds == f] = softmax_scores(x[folds == f], w, b, len(labels))
    w, b = fit_softmax(x, y, len(classes), l2=L2, extra_weight=extra)
    # Only ordinary listing photos calibrate: the hard negatives are not what a marketplace
    # mostly sees, and the benign targets are about listing photos.
    is_listing = np.zeros(len(y), bool)
    is_listing[len(pro.paths) : len(pro.paths) + len(listing.paths)] = True
    is_photo = np.arange(len(y)) < len(pro.paths) + len(listing.paths)
    thresholds = choose_thresholds(
        scores, y, is_listing, is_photo, labels, review_fpr, is_scene, scene_fpr
    )

    info = {
        "labels": labels,
        "features": features,
        "train_photos": {c: int((y[is_photo] == i).sum()) for i, c in enumerate(classes)},
        "train_crops": {c: int((y[~is_photo] == i).sum()) for i, c in enumerate(labels)},
        "calibration": f"5-fold out-of-fold scores on {benign.name} train, "
        f"{review_fpr:.2%} per label at review, {REJECT_FPR:.2%} at reject"
        + (
            f"; at most {scene_fpr:.1%} of {data.name} benign scenes at review" if scene_fpr else ""
        ),
        "recipe": {
            "seed": seed,
            "crops": crops,
            "review_fpr": review_fpr,
            "hard_weight": hard_weight,
            "scene_fpr": scene_fpr,
        },
        "suggested_thresholds": thresholds,
        "data": [str(data), str(benign)],
    }
    graft(model, out, w, b, labels, info, features)
    if oof_dir is not None:
        keys = [f"{DETECTOR}.{label}" for label in labels]
        save_oof(out, pro.paths + listing.paths, keys, scores[is_photo], oof_dir)
    return info


def evaluate_head(
    model: Path,
    data: Path,
    benign: Path,
    thresholds: dict[str, dict[str, float]],
    cache: Path | None,
) -> dict[str, Any]:
    """Recall per label on `data`/val and benign review/reject rates on `benign`/val."""
    _, contract = _session(model)
    head = contract.detectors.get(DETECTOR)
    if head is None:
        raise TrainingError(f"{model} has no '{DETECTOR}' head: run add-prohibited-head first")
    pro, listing = (
        list_labelled_photos(data, "val"),
        list_labelled_photos(benign, "val", benign_as=BENIGN),
    )
    s_pro = run_outputs(model, pro.paths, [OUTPUT], cache)[OUTPUT]
    s_ben = run_outputs(model, listing.paths, [OUTPUT], cache)[OUTPUT]
    result: dict[str, Any] = {"recall": {}, "benign": {}}
    sizes = [object_size(data, "val", p) for p in pro.paths]
    origins = photo_origins(data, "val", pro)
    for k, label in enumerate(head.labels):
        t = thresholds[label]
        mine = np.array(pro.labels) == label
        pos = s_pro[mine, k]
        result["recall"][label] = {
            "n": len(pos),
            "flagged": int((pos >= t["review"]).sum()),
            "rejected": int((pos >= t["reject"]).sum()),
        }
        # Per source: how large the boxed object is (a proxy for product shot vs scene), and
        # which collection the photo came from.
        groups: dict[str, dict[str, list[int]]] = {"object_size": {}, "origin": {}}
        for i in np.flatnonzero(mine):
            hit = int(s_pro[i, k] >= t["review"])
            groups["object_size"].setdefault(size_bucket(sizes[i]), []).append(hit)
            groups["origin"].setdefault(origins[i], []).append(hit)
        for kind, buckets in groups.items():
            result["recall"][label][kind] = {
                name: f"{sum(hits)}/{len(hits)}" for name, hits in sorted(buckets.items())
            }
    for name, s in ((f"{benign.name} val", s_ben), (f"{data.name} val benign", s_pro)):
        if name.endswith("benign"):
            s = s[np.array(pro.labels) == BENIGN]
        rev = np.array([thresholds[lb]["review"] for lb in head.labels])
        rej = np.array([thresholds[lb]["reject"] for lb in head.labels])
        rejected = (s >= rej).any(1)
        result["benign"][name] = {
            "n": len(s),
            "review": int(((s >= rev).any(1) & ~rejected).sum()),
            "reject": int(rejected.sum()),
        }
    return result


def category_outputs(model: Path, paths: list[Path], cache: Path | None) -> dict[str, F32]:
    """The category head's outputs (probabilities and `embedding`), which grafting must keep."""
    _, contract = _session(model)
    return run_outputs(model, paths, [contract.output_name, EMBEDDING], cache)
