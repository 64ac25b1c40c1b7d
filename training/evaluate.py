"""`evaluate`: the validation report and the category-mismatch operating point.

The trained network runs on photos through the worker's own decode + preprocess. Reported:
top-1, top-5, per-class precision/recall/F1, macro-category accuracy, the confusion matrix
(PNG and JSON) and the mismatch operating curve. The curve models a listing stream where a
share `r` of listings declare a wrong category, drawn uniformly from the other categories:
for every photo it scores the correct listing and all its wrong-category variants, so the
precision and recall of "flag when the declared category is not the top-1 and
p(declared) < t" are exact expectations, not one noisy sample. The threshold is chosen on
the held-out part of train and reported on val.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from modq.domain.preprocess import PreprocessSpec
from modq.domain.taxonomy import macros
from training.data import Item, Manifest
from training.export import Exportable, module_session
from training.features import SMALL
from training.transforms import eval_array

Probs = npt.NDArray[np.float32]


class _EvalPhotos(Dataset[npt.NDArray[np.float32]]):
    def __init__(self, root: Path, items: list[Item], spec: PreprocessSpec) -> None:
        self.root, self.items, self.spec = root, items, spec

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> npt.NDArray[np.float32]:
        return eval_array(self.root / self.items[i].path, self.spec)


def predict(
    net: torch.nn.Module,
    root: Path,
    items: list[Item],
    spec: PreprocessSpec,
    desc: str,
    work_dir: Path,
) -> Probs:
    """Softmax probabilities [N, C] of the network on the evaluation transform, run by ONNX
    Runtime (the worker's runtime; the export parity check ties it to PyTorch)."""
    outputs = ("category_probs", "embedding")
    sess = module_session(Exportable(net), spec.input_size, work_dir / "evaluate.onnx", outputs)
    dataset = _EvalPhotos(root, items, spec)
    small = len(dataset) < SMALL  # a worker process costs more than a few photos
    loader = DataLoader(
        dataset,
        batch_size=16,
        num_workers=0 if small else 1,
        multiprocessing_context=None if small else "spawn",
    )
    out = [
        sess.run(["category_probs"], {"image": batch.numpy()})[0]
        for batch in tqdm(loader, desc=desc, unit="batch")
    ]
    return np.concatenate(out).astype(np.float32)


def classification_metrics(
    probs: Probs, y: npt.NDArray[np.int64], labels: list[str]
) -> dict[str, Any]:
    pred = probs.argmax(1)
    k = min(5, len(labels))
    top5 = (np.argsort(-probs, axis=1)[:, :k] == y[:, None]).any(1)
    macro = np.array(macros(labels))
    p, r, f, s = precision_recall_fscore_support(
        y, pred, labels=range(len(labels)), zero_division=0
    )
    per_class = {
        label: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "photos": len(y),
        "top1": float((pred == y).mean()),
        f"top{k}": float(top5.mean()),
        "macro_category_accuracy": float((macro[pred] == macro[y]).mean()),
        "macro_f1": float(np.mean(f)),
        "per_class": per_class,
    }


def mismatch_curve(
    probs: Probs, y: npt.NDArray[np.int64], thresholds: npt.NDArray[np.float64], share: float
) -> list[dict[str, float]]:
    """Precision/recall of mismatch flagging at each threshold (see module docstring)."""
    n, c = probs.shape
    top = probs.argmax(1)
    p_true = probs[np.arange(n), y]
    # Correct listings: flagged when the model's top-1 is elsewhere and p(true) < t.
    false_ok = top != y
    # Wrong listings: every (photo, declared d != y) pair, equally likely.
    wrong = np.ones((n, c), dtype=bool)
    wrong[np.arange(n), y] = False
    declared_not_top = wrong & (np.arange(c)[None, :] != top[:, None])
    rows = []
    for t in thresholds:
        fpr = float((false_ok & (p_true < t)).mean())
        recall = float((declared_not_top & (probs < t)).sum() / wrong.sum())
        flagged = share * recall + (1 - share) * fpr
        precision = share * recall / flagged if flagged > 0 else 1.0
        rows.append(
            {
                "threshold": float(t),
                "precision": precision,
                "recall": recall,
                "false_flag_rate": fpr,
            }
        )
    return rows


def default_thresholds() -> npt.NDArray[np.float64]:
    return np.unique(np.round(np.concatenate([np.geomspace(1e-4, 1.0, 161), [0.5]]), 6))


def choose_threshold(curve: list[dict[str, float]], target_precision: float) -> dict[str, Any]:
    """Highest recall with precision ≥ target (ties: the lowest threshold, the safest for
    sellers); without such a point, the best F1."""
    ok = [row for row in curve if row["precision"] >= target_precision and row["recall"] > 0]
    if ok:
        best = max(ok, key=lambda r: (round(r["recall"], 6), -r["threshold"]))
        return {**best, "rule": f"max recall at precision >= {target_precision}"}

    def f1(r: dict[str, float]) -> float:
        s = r["precision"] + r["recall"]
        return 2 * r["precision"] * r["recall"] / s if s else 0.0

    best = max(curve, key=f1)
    return {**best, "rule": f"max F1 (no threshold reaches precision {target_precision})"}


def at_threshold(curve: list[dict[str, float]], t: float) -> dict[str, float]:
    return min(curve, key=lambda row: abs(row["threshold"] - t))


def save_confusion(
    probs: Probs, y: npt.NDArray[np.int64], labels: list[str], out_dir: Path
) -> dict[str, Any]:
    cm = confusion_matrix(y, probs.argmax(1), labels=range(len(labels)))
    doc = {"labels": labels, "rows_true_cols_predicted": cm.tolist()}
    (out_dir / "confusion.json").write_text(json.dumps(doc, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 8))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("validation confusion matrix (counts; colour = row share)")
    fig.tight_layout()
    fig.savefig(out_dir / "confusion.png", dpi=110)
    plt.close(fig)
    return doc


def save_curve_plot(curves: dict[str, list[dict[str, float]]], chosen: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        t = [r["threshold"] for r in curve]
        ax.plot(t, [r["precision"] for r in curve], label=f"{name} precision")
        ax.plot(t, [r["recall"] for r in curve], "--", label=f"{name} recall")
    ax.axvline(chosen, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("match_threshold")
    ax.set_ylim(0.5, 1.01)
    ax.legend(fontsize=7)
    ax.set_title("category-mismatch flagging")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def labels_of(items: list[Item], manifest: Manifest) -> npt.NDArray[np.int64]:
    index = {label: i for i, label in enumerate(manifest.labels)}
    return np.array([index[it.label] for it in items], dtype=np.int64)
