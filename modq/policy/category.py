"""The category half of the policy: does what the photos show match the declared category?

The readable photos' probabilities are pooled into one distribution for the listing and
compared with the declared category: a wrong leaf inside the right macro category is a near
miss, a wrong macro category a mismatch (rejected when the model is confident).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from modq.domain.events import ListingEvent
from modq.domain.reasons import Reason
from modq.domain.taxonomy import macro
from modq.domain.verdicts import Decision, PhotoResult, Scored
from modq.policy.combine import worst


class CategoryRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match_threshold: float = Field(0.05, ge=0.0, le=1.0)
    reject_threshold: float = Field(0.90, ge=0.0, le=1.0)
    near_miss: Literal["review", "approve"] = "review"


class PhotoRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unreadable: Literal["review", "reject"] = "review"


class CategoryDecision(BaseModel):
    """The category half of a verdict, before detectors add their reasons."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    reasons: list[Reason]
    scores: dict[str, float]
    suggested: list[Scored]
    best_photo: int | None


def decide_category(
    rules: CategoryRules,
    photo_rules: PhotoRules,
    event: ListingEvent,
    photos: Sequence[PhotoResult],
    probs: npt.NDArray[np.float32],
    labels: Sequence[str],
) -> CategoryDecision:
    """Aggregate the readable photos' probabilities (rows of `probs`, in the order of
    the readable photos) and compare them with the declared category."""
    decision: Decision = "approve"
    reasons: list[Reason] = []
    for photo in photos:
        if not photo.ok:
            decision = worst(decision, photo_rules.unreadable)
            reasons.append(
                Reason(code=photo.error_code or "image_unreadable", photo=photo.index,
                       action=photo_rules.unreadable, detail=photo.error or "")
            )  # fmt: skip

    readable = [p for p in photos if p.ok]
    if not readable:
        reasons.append(
            Reason(code="no_readable_photos", action="review", detail="nothing to classify")
        )
        return CategoryDecision(
            decision=worst(decision, "review"),
            reasons=reasons,
            scores={},
            suggested=[],
            best_photo=None,
        )

    mean = pooled(probs)
    scores = {label: round(float(p), 6) for label, p in zip(labels, mean, strict=True)}
    order = np.argsort(-mean)
    suggested = [(labels[i], round(float(mean[i]), 4)) for i in order[:3]]
    declared = event.declared_category
    col = list(labels).index(declared)
    best_photo = readable[int(np.argmax(probs[:, col]))].index

    top, p_top, p_declared = labels[order[0]], float(mean[order[0]]), float(mean[col])
    if top != declared and p_declared < rules.match_threshold:
        # The predicted category is the label, the declared one the detail (`Reason.text`).
        near = macro(top) == macro(declared)
        action: Decision = (
            rules.near_miss if near else "reject" if p_top >= rules.reject_threshold else "review"
        )
        reasons.append(
            Reason(
                code="category_near_miss" if near else "category_mismatch",
                label=top,
                score=round(p_top, 6),
                action=action,
                detail=f"declared {declared} ({p_declared:.2f})",
            )
        )
        decision = worst(decision, action)
    return CategoryDecision(
        decision=decision,
        reasons=reasons,
        scores=scores,
        suggested=suggested,
        best_photo=best_photo,
    )


def pooled(probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """One distribution for a listing from its photos' rows: the renormalised geometric mean.

    Each photo is independent evidence, so three photos that each give the declared category
    1e-3 say less for it than the arithmetic mean (which one ambiguous photo dominates) would.
    For a single photo it is that photo's distribution, so thresholds calibrated on single
    photos keep their meaning.
    """
    logs = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)).mean(axis=0)
    weights = np.exp(logs - logs.max())
    return weights / weights.sum()  # type: ignore[no-any-return]
