"""Fitting the prohibited head: class-balanced softmax regression on trunk features, and
the review/reject thresholds chosen on out-of-fold scores of the training photos."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Share of calibration negatives allowed above each label's threshold. Four labels together
# stay under the targets (1% of benign photos to review, 0.2% auto-rejected) with a margin.
REVIEW_FPR = 0.002
REJECT_FPR = 0.0004
L2 = 1e-2

F32 = npt.NDArray[np.float32]


def fit_softmax(
    x: F32,
    y: npt.NDArray[np.int64],
    classes: int,
    l2: float = 1e-3,
    steps: int = 600,
    extra_weight: npt.NDArray[np.float64] | None = None,
) -> tuple[F32, F32]:
    """Class-balanced multinomial logistic regression (full-batch Adam) on standardised
    features; returns weights and bias for the *raw* features (standardisation folded in).
    `extra_weight` multiplies the class-balanced weight of each sample (hard negatives)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    # float64 once: mixing float32 features with float64 weights would upcast every step.
    z = ((x - mean) / std).astype(np.float64)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    sample_w = (len(y) / (classes * np.maximum(counts, 1)))[y]
    if extra_weight is not None:
        sample_w = sample_w * extra_weight
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


def choose_thresholds(
    scores: F32,
    y: npt.NDArray[np.int64],
    is_listing: npt.NDArray[np.bool_],
    is_photo: npt.NDArray[np.bool_],
    labels: list[str],
    review_fpr: float = REVIEW_FPR,
    is_scene: npt.NDArray[np.bool_] | None = None,
    scene_fpr: float | None = None,
) -> dict[str, dict[str, float]]:
    """Per label: review and reject thresholds leaving `review_fpr` / `REJECT_FPR` of the
    listing photos' out-of-fold scores above them, and the train recall at review. With
    `scene_fpr`, review also leaves at most that share of the hard-negative scenes above it."""
    thresholds: dict[str, dict[str, float]] = {}
    for k, label in enumerate(labels):
        neg = scores[is_listing, k]
        review = threshold_at(neg, review_fpr, 0.05)
        if scene_fpr is not None and is_scene is not None and is_scene.any():
            review = max(review, threshold_at(scores[is_scene, k], scene_fpr, 0.05))
        reject = max(threshold_at(neg, REJECT_FPR, 0.5), review)
        pos = scores[is_photo & (y == k), k]
        thresholds[label] = {
            "review": review,
            "reject": reject,
            "train_recall_at_review": round(float((pos >= review).mean()), 3),
        }
    return thresholds
