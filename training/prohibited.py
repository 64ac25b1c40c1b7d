"""Prohibited items head: firearm / knife / drugs / tobacco scores inside the shipped ONNX graph.

The shipped model already computes a pooled image embedding (output `embedding`) for its
category head. A linear softmax over (prohibited labels + benign) is fitted on embeddings of
prohibited-v1 train (positives and hard negatives) plus listings-v1 train (ordinary listing
photos as benign), then grafted into the same graph as Gemm → Softmax → Slice with a new
output `prohibited_probs`, and recorded in the model contract as detector `prohibited`. The
worker therefore still makes one ONNX call per batch; the head adds one [1280 x 5] matrix.

Thresholds are chosen on out-of-fold scores of the *training* photos (5-fold), never on
validation, and written to the contract's provenance for the policy file. Validation recall
(prohibited-v1 val) and false-positive rates (listings-v1 val, all benign) are reported by
`evaluate`.

    modq-train add-prohibited-head --model models/modq-listings.onnx \
        --data ../shared/datasets/prohibited-v1 --benign ../shared/datasets/listings-v1
"""

from __future__ import annotations

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


def graft(model: Path, out: Path, w: F32, b: F32, labels: list[str], info: dict[str, Any]) -> None:
    """Add Gemm → Softmax → Slice(`labels`) on `embedding` as output `prohibited_probs`."""
    proto = onnx.load(str(model))
    graph = proto.graph
    if EMBEDDING not in {o.name for o in graph.output}:
        raise TrainingError(f"{model} has no '{EMBEDDING}' output to put the head on")
    # Re-running replaces a previous head instead of stacking a second one.
    ours = {f"{DETECTOR}_{s}" for s in ("w", "b", "logits", "softmax", "starts", "ends", "axes")}
    keep = [n for n in graph.node if not set(n.output) & (ours | {OUTPUT})]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name not in ours]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    outs = [o for o in graph.output if o.name != OUTPUT]
    del graph.output[:]
    graph.output.extend(outs)

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
                "Gemm", [EMBEDDING, f"{DETECTOR}_w", f"{DETECTOR}_b"], [f"{DETECTOR}_logits"],
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
    cache: Path | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit, calibrate and graft the head; returns the provenance written to the contract."""
    pro = scan(data, "train")
    unknown = sorted(set(pro.labels) - {*labels, BENIGN})
    if unknown:
        raise TrainingError(f"{data}/train has folders {unknown} that are not in --labels")
    listing = scan(benign, "train", benign_as=BENIGN)
    paths, names = pro.paths + listing.paths, pro.labels + listing.labels
    classes = [*labels, BENIGN]
    y = np.array([classes.index(n) for n in names], np.int64)
    x = run_outputs(model, paths, [EMBEDDING], cache)[EMBEDDING]

    # Thresholds come from out-of-fold scores of every training photo (5-fold), so all
    # ~8,000 benign listing photos calibrate them; the shipped head is then fit on all.
    folds = np.random.default_rng(seed).integers(0, 5, len(y))
    scores = np.zeros((len(y), len(labels)), np.float32)
    for f in tqdm(range(5), desc="calibrating (5-fold)"):
        w, b = fit_softmax(x[folds != f], y[folds != f], len(classes), l2=L2)
        scores[folds == f] = softmax_scores(x[folds == f], w, b, len(labels))
    w, b = fit_softmax(x, y, len(classes), l2=L2)
    # Only ordinary listing photos calibrate: the hard negatives are not what a marketplace
    # mostly sees, and the benign targets are about listing photos.
    is_benign = np.array(names) == BENIGN
    is_benign[: len(pro.paths)] = False
    thresholds: dict[str, dict[str, float]] = {}
    for k, label in enumerate(labels):
        neg = scores[is_benign, k]
        review = threshold_at(neg, REVIEW_FPR, 0.05)
        reject = max(threshold_at(neg, REJECT_FPR, 0.5), review)
        thresholds[label] = {
            "review": review,
            "reject": reject,
            "train_recall_at_review": round(float((scores[y == k, k] >= review).mean()), 3),
        }

    info = {
        "labels": labels,
        "train_photos": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "calibration": "5-fold out-of-fold scores on listings-v1 train",
        "suggested_thresholds": thresholds,
        "data": [str(data), str(benign)],
    }
    graft(model, out, w, b, labels, info)
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
    for k, label in enumerate(head.labels):
        t = thresholds[label]
        pos = s_pro[np.array(pro.labels) == label, k]
        result["recall"][label] = {
            "n": len(pos),
            "flagged": int((pos >= t["review"]).sum()),
            "rejected": int((pos >= t["reject"]).sum()),
        }
    for name, s in (("listings-v1 val", s_ben), ("prohibited-v1 val benign", s_pro)):
        if name.startswith("prohibited"):
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


@click.command("add-prohibited-head")
@click.option("--model", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="prohibited-v1: train/<label>/*.jpg and val/<label>/*.jpg")  # fmt: skip
@click.option("--benign", type=click.Path(exists=True, path_type=Path), required=True,
              help="listings-v1: every photo counts as benign")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output ONNX (default: overwrite --model).")  # fmt: skip
@click.option("--labels", default=",".join(DEFAULT_LABELS), show_default=True)
@click.option("--cache", type=click.Path(path_type=Path), default=Path("runs/prohibited-cache"),
              show_default=True)  # fmt: skip
def add_prohibited_head(
    model: Path, data: Path, benign: Path, out: Path | None, labels: str, cache: Path
) -> None:
    """Fit the prohibited-items head on MODEL's embeddings and graft it into the graph."""
    wanted = [lb.strip() for lb in labels.split(",") if lb.strip()]
    target = out or model
    info = train_head(model, data, benign, target, wanted, cache)
    click.echo(json.dumps(info["suggested_thresholds"], indent=2))
    report = evaluate(target, data, benign, info["suggested_thresholds"], cache)
    click.echo(json.dumps(report, indent=2))
    click.echo(f"wrote {target}")


if __name__ == "__main__":
    add_prohibited_head()
