"""Paired bootstrap for the ship gate: rates of two models on the same units, their
difference, and the flips between them.

Every rate the gate reports is a ratio of sums over units (photos or listings): recall of a
class is (right and of the class) / (of the class), a false-flag rate (flagged) / (benign).
One matrix of Poisson(1) weights, B resamples × N units, resamples all of them at once; the
same weights serve both models, so the interval of candidate − shipped is a paired one (the
photos that both models get right or wrong cancel out instead of widening it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Paired:
    """One rate of the shipped model and the candidate, with 95% intervals."""

    name: str
    n: int
    shipped: float
    shipped_ci: tuple[float, float]
    candidate: float
    candidate_ci: tuple[float, float]
    diff: float
    diff_ci: tuple[float, float]

    def worse(self, higher_is_better: bool) -> bool:
        """The candidate is worse beyond the interval: the whole paired interval of
        candidate − shipped lies on the bad side of zero."""
        return self.diff_ci[1] < 0 if higher_is_better else self.diff_ci[0] > 0

    def row(self) -> dict[str, Any]:
        return asdict(self)


class Bootstrap:
    def __init__(self, n_units: int, resamples: int = 1000, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.poisson(1.0, (resamples, n_units)).astype(np.float32)

    def paired(self, name: str, num_a: Bools, den_a: Bools, num_b: Bools, den_b: Bools) -> Paired:
        """Rate num/den of the shipped model (a) and the candidate (b), per resample."""
        cols = np.stack([num_a, den_a, num_b, den_b], axis=1).astype(np.float32)
        sums = self.weights @ cols  # [B, 4]
        with np.errstate(invalid="ignore", divide="ignore"):
            ra, rb = sums[:, 0] / sums[:, 1], sums[:, 2] / sums[:, 3]
        a, b = _rate(num_a, den_a), _rate(num_b, den_b)
        return Paired(
            name,
            int(den_a.sum()),
            a,
            _ci(ra),
            b,
            _ci(rb),
            b - a,
            _ci(rb - ra),
        )


def _rate(num: Bools, den: Bools) -> float:
    d = int(den.sum())
    return float(num.sum() / d) if d else float("nan")


def _ci(x: npt.NDArray[np.float32]) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if not len(x):
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(x, [2.5, 97.5])
    return (round(float(lo), 4), round(float(hi), 4))


def flips(right_a: Bools, right_b: Bools) -> dict[str, int]:
    """How the units split between the two models' right and wrong answers."""
    return {
        "both_right": int((right_a & right_b).sum()),
        "shipped_only": int((right_a & ~right_b).sum()),
        "candidate_only": int((~right_a & right_b).sum()),
        "both_wrong": int((~right_a & ~right_b).sum()),
    }
