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
benign) are reported by `evaluate`.

    modq-train add-prohibited-head --model models/modq-listings.onnx \
        --data ../shared/datasets/prohibited-v2 --benign ../shared/datasets/listings-v1
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from tqdm import tqdm

from modq.domain.contract import DetectorHead, ModelContract
from modq.domain.preprocess import preprocess
from modq.pipeline.decode import decode_image
from training import TrainingError

DETECTOR = "prohibited"
OUTPUT = "prohibited_probs"
EMBEDDING = "embedding"
BENIGN = "benign"
DEFAULT_LABELS = ("firearm", "knife", "drugs", "tobacco")
# Share of calibration negatives allowed above each label's threshold. Four labels together
# stay under the targets (1% of benign photos to review, 0.2% auto-rejected) with a margin.
REVIEW_FPR = 0.002
REJECT_FPR = 0.0004
L2 = 1e-2

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Photos:
    paths: list[Path]
    labels: list[str]


def scan(root: Path, split: str, benign_as: str | None = None) -> Photos:
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


def fit_softmax(
    x: F32, y: npt.NDArray[np.int64], classes: int, l2: float = 1e-3, steps: int = 600
) -> tuple[F32, F32]:
    """Class-balanced multinomial logistic regression (full-batch Adam) on standardised
    features; returns weights and bias for the *raw* features (standardisation folded in)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    # float64 once: mixing float32 features with float64 weights would upcast every step.
    z = ((x - mean) / std).astype(np.float64)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    sample_w = (len(y) / (classes * np.maximum(counts, 1)))[y]
    sample_w /= sample_w.sum()
    onehot = np.eye(classes)[y]
    w = np.zeros((x.shape[1], classes))
    b = np.zeros(classes)
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    for t in range(1, steps + 1):
        logits = z @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) * sample_w[:, None]
        grads = [z.T @ g + l2 * w, g.sum(0)]
        for i, (param, grad) in enumerate(zip((w, b), grads, strict=True)):
            m[i] = beta1 * m[i] + (1 - beta1) * grad
            v[i] = beta2 * v[i] + (1 - beta2) * grad**2
            step = lr * (m[i] / (1 - beta1**t)) / (np.sqrt(v[i] / (1 - beta2**t)) + 1e-8)
            param -= step
    w_raw = w / std[:, None]
    b_raw = b - mean @ w_raw
    return w_raw.astype(np.float32), b_raw.astype(np.float32)


def softmax_scores(x: F32, w: F32, b: F32, n_labels: int) -> F32:
    logits = x @ w + b
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True))[:, :n_labels].astype(np.float32)


def threshold_at(negatives: F32, fpr: float, floor: float) -> float:
    """Smallest threshold leaving at most `fpr` of the negatives at or above it."""
    allowed = int(np.floor(fpr * len(negatives)))
    ranked = np.sort(negatives)[::-1]
    above = ranked[allowed] if allowed < len(ranked) else 0.0
    return round(float(max(floor, np.nextafter(above, np.float32(1.0)))), 4)


FEATURES = ("avg", "avg+max")
DEFAULT_FEATURES = "avg+max"
FEATURES_OUT = f"{DETECTOR}_features_out"  # only in the copy `feature_model` writes
_HEAD_TENSORS = (
    "features_out",
    "w",
    "b",
    "logits",
    "softmax",
    "starts",
    "ends",
    "axes",
    "map_max",
    "features",
)


def _strip_head(graph: onnx.GraphProto) -> None:
    """Remove a previous head, so re-running replaces it instead of stacking a second one."""
    ours = {f"{DETECTOR}_{s}" for s in _HEAD_TENSORS}
    keep = [n for n in graph.node if not set(n.output) & (ours | {OUTPUT})]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name not in ours]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    outs = [o for o in graph.output if o.name not in ours | {OUTPUT}]
    del graph.output[:]
    graph.output.extend(outs)


def _add_features(graph: onnx.GraphProto, features: str) -> str:
    """Nodes computing the head's input; returns its tensor name.

    `avg` is the pooled `embedding` itself. `avg+max` adds the spatial max of the same
    feature map (the input of the ReduceMean that pools `embedding`): an object that fills one
    cell of the 7x7 map moves the max although it barely moves the mean. Both only read
    tensors the category head already computes, so category outputs cannot change.
    """
    if features not in FEATURES:
        raise TrainingError(f"--features must be one of {FEATURES}, not {features!r}")
    if features == "avg":
        return EMBEDDING
    pool = next((n for n in graph.node if EMBEDDING in n.output), None)
    if pool is None or pool.op_type not in ("ReduceMean", "GlobalAveragePool"):
        raise TrainingError(f"'{EMBEDDING}' is not a pooled feature map: cannot add its max")
    graph.node.extend(
        [
            helper.make_node("ReduceMax", [pool.input[0]], [f"{DETECTOR}_map_max"], axes=[2, 3],
                             keepdims=0, name=f"{DETECTOR}_map_max_op"),
            helper.make_node("Concat", [EMBEDDING, f"{DETECTOR}_map_max"],
                             [f"{DETECTOR}_features"], axis=1, name=f"{DETECTOR}_concat"),
        ]
    )  # fmt: skip
    return f"{DETECTOR}_features"


def feature_model(model: Path, features: str, out: Path) -> Path:
    """A copy of `model` whose extra output `prohibited_features` is the head's input."""
    proto = onnx.load(str(model))
    _strip_head(proto.graph)
    name = _add_features(proto.graph, features)
    proto.graph.node.append(
        helper.make_node("Identity", [name], [FEATURES_OUT], name=f"{DETECTOR}_fo")
    )
    proto.graph.output.append(helper.make_tensor_value_info(FEATURES_OUT, TensorProto.FLOAT, None))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file() or out.read_bytes() != proto.SerializeToString():
        onnx.save(proto, str(out))
    return out


def graft(
    model: Path,
    out: Path,
    w: F32,
    b: F32,
    labels: list[str],
    info: dict[str, Any],
    features: str = DEFAULT_FEATURES,
) -> None:
    """Add [features →] Gemm → Softmax → Slice(`labels`) as output `prohibited_probs`."""
    proto = onnx.load(str(model))
    graph = proto.graph
    if EMBEDDING not in {o.name for o in graph.output}:
        raise TrainingError(f"{model} has no '{EMBEDDING}' output to put the head on")
    _strip_head(graph)
    head_input = _add_features(graph, features)

    n = len(labels)
    graph.initializer.extend(
        [
            numpy_helper.from_array(w.T.copy(), f"{DETECTOR}_w"),
            numpy_helper.from_array(b, f"{DETECTOR}_b"),
            numpy_helper.from_array(np.array([0], np.int64), f"{DETECTOR}_starts"),
            numpy_helper.from_array(np.array([n], np.int64), f"{DETECTOR}_ends"),
            numpy_helper.from_array(np.array([1], np.int64), f"{DETECTOR}_axes"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node(
                "Gemm", [head_input, f"{DETECTOR}_w", f"{DETECTOR}_b"], [f"{DETECTOR}_logits"],
                transB=1, name=f"{DETECTOR}_gemm",
            ),
            helper.make_node(
                "Softmax", [f"{DETECTOR}_logits"], [f"{DETECTOR}_softmax"], axis=1,
                name=f"{DETECTOR}_softmax_op",
            ),
            helper.make_node(
                "Slice",
                [f"{DETECTOR}_{s}" for s in ("softmax", "starts", "ends", "axes")],
                [OUTPUT], name=f"{DETECTOR}_slice",
            ),
        ]
    )  # fmt: skip
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", n]))

    meta = {p.key: p.value for p in proto.metadata_props}
    contract = ModelContract.from_metadata(meta, str(model))
    detectors = {**contract.detectors, DETECTOR: DetectorHead(output=OUTPUT, labels=labels)}
    training = {**contract.training, DETECTOR: info}
    updated = contract.model_copy(update={"detectors": detectors, "training": training})
    for prop in proto.metadata_props:
        if prop.key in updated.to_metadata():
            prop.value = updated.to_metadata()[prop.key]
    onnx.checker.check_model(proto)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    tmp.replace(out)


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
) -> dict[str, Any]:
    """Fit, calibrate and graft the head; returns the provenance written to the contract."""
    pro = scan(data, "train")
    unknown = sorted(set(pro.labels) - {*labels, BENIGN})
    if unknown:
        raise TrainingError(f"{data}/train has folders {unknown} that are not in --labels")
    listing = scan(benign, "train", benign_as=BENIGN)
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
    scores = np.zeros((len(y), len(labels)), np.float32)
    for f in tqdm(range(5), desc="calibrating (5-fold)"):
        w, b = fit_softmax(x[folds != f], y[folds != f], len(classes), l2=L2)
        scores[folds == f] = softmax_scores(x[folds == f], w, b, len(labels))
    w, b = fit_softmax(x, y, len(classes), l2=L2)
    # Only ordinary listing photos calibrate: the hard negatives are not what a marketplace
    # mostly sees, and the benign targets are about listing photos.
    is_listing = np.zeros(len(y), bool)
    is_listing[len(pro.paths) : len(pro.paths) + len(listing.paths)] = True
    is_photo = np.arange(len(y)) < len(pro.paths) + len(listing.paths)
    thresholds: dict[str, dict[str, float]] = {}
    for k, label in enumerate(labels):
        neg = scores[is_listing, k]
        review = threshold_at(neg, review_fpr, 0.05)
        reject = max(threshold_at(neg, REJECT_FPR, 0.5), review)
        pos = scores[is_photo & (y == k), k]
        thresholds[label] = {
            "review": review,
            "reject": reject,
            "train_recall_at_review": round(float((pos >= review).mean()), 3),
        }

    info = {
        "labels": labels,
        "features": features,
        "train_photos": {c: int((y[is_photo] == i).sum()) for i, c in enumerate(classes)},
        "train_crops": {c: int((y[~is_photo] == i).sum()) for i, c in enumerate(labels)},
        "calibration": f"5-fold out-of-fold scores on {benign.name} train, "
        f"{review_fpr:.2%} per label at review, {REJECT_FPR:.2%} at reject",
        "suggested_thresholds": thresholds,
        "data": [str(data), str(benign)],
    }
    graft(model, out, w, b, labels, info, features)
    return info


def evaluate(
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
    pro, listing = scan(data, "val"), scan(benign, "val", benign_as=BENIGN)
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


@click.command("add-prohibited-head")
@click.option("--model", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="prohibited-v2: train/<label>/*.jpg, val/<label>/*.jpg, boxes/")  # fmt: skip
@click.option("--benign", type=click.Path(exists=True, path_type=Path), required=True,
              help="listings-v1: every photo counts as benign")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output ONNX (default: overwrite --model).")  # fmt: skip
@click.option("--labels", default=",".join(DEFAULT_LABELS), show_default=True)
@click.option("--features", type=click.Choice(FEATURES), default=DEFAULT_FEATURES,
              show_default=True,
              help="Head input: pooled embedding, or it + spatial max of the same map")  # fmt: skip
@click.option("--crops/--no-crops", default=False, show_default=True,
              help="Also train on square crops around the boxes in DATA/boxes/")  # fmt: skip
@click.option("--review-fpr", type=float, default=REVIEW_FPR, show_default=True,
              help="Share of out-of-fold listing photos at review, per label")  # fmt: skip
@click.option("--cache", type=click.Path(path_type=Path), default=Path("runs/prohibited-cache"),
              show_default=True)  # fmt: skip
def add_prohibited_head(
    model: Path,
    data: Path,
    benign: Path,
    out: Path | None,
    labels: str,
    features: str,
    crops: bool,
    review_fpr: float,
    cache: Path,
) -> None:
    """Fit the prohibited-items head on MODEL's features and graft it into the graph."""
    wanted = [lb.strip() for lb in labels.split(",") if lb.strip()]
    target = out or model
    # The category outputs of MODEL on listing val photos, before TARGET (maybe MODEL) is written.
    listing_val = scan(benign, "val", benign_as=BENIGN).paths
    before = category_outputs(model, listing_val, cache)
    info = train_head(
        model, data, benign, target, wanted, cache,
        features=features, crops=crops, review_fpr=review_fpr,
    )  # fmt: skip
    changed = [k for k, v in category_outputs(target, listing_val, cache).items()
               if not np.array_equal(v, before[k])]  # fmt: skip
    if changed:
        raise TrainingError(f"grafting the head changed {changed} of {model}: not shipping")
    click.echo(f"category outputs bit-identical to {model} on {len(listing_val)} photos")
    click.echo(json.dumps(info["suggested_thresholds"], indent=2))
    report = evaluate(target, data, benign, info["suggested_thresholds"], cache)
    click.echo(json.dumps(report, indent=2))
    click.echo(f"wrote {target}")


if __name__ == "__main__":
    add_prohibited_head()
