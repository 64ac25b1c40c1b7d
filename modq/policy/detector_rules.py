"""Policy rules for detector scores: per-label thresholds, category exceptions, switches.

The policy file's `[labels."<detector>.<label>"]` tables (keys may be globs such as
"banks.*") give an auto-reject threshold and a review threshold below it; `exceptions`
override both for categories matching a glob (fashion.* tolerates more skin, a home
category may allow kitchen knives). `[detectors.<name>] categories` says where a slow
detector runs at all. `[banks]` holds the PDQ matching parameters.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modq.detectors.catalogue import CATALOGUE, reason_code
from modq.domain.reasons import Reason
from modq.domain.verdicts import Decision, PhotoResult
from modq.policy.combine import worst

NEVER = 2.0  # a threshold above any score: the action is off


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    review: float = Field(NEVER, ge=0.0)
    reject: float = Field(NEVER, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        both = {"review", "reject"} <= self.model_fields_set
        if both and self.review > self.reject:
            raise ValueError(f"review threshold {self.review} above reject {self.reject}")
        return self


class LabelException(Thresholds):
    categories: list[str] = Field(min_length=1)


class LabelRules(Thresholds):
    exceptions: list[LabelException] = Field(default_factory=list)

    def for_category(self, category: str) -> Thresholds:
        for exc in self.exceptions:
            if any(fnmatch.fnmatchcase(category, pat) for pat in exc.categories):
                return exc
        return self


class DetectorSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Globs of declared categories the detector runs for; ["*"] = everywhere.
    categories: list[str] = Field(default_factory=lambda: ["*"])

    def enabled_for(self, category: str) -> bool:
        return any(fnmatch.fnmatchcase(category, pat) for pat in self.categories)


class BankRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_distance: int = Field(31, ge=0, le=128)
    min_quality: int = Field(50, ge=0, le=100)
    duplicate_window_days: float = Field(30.0, gt=0)


class DetectorRules(BaseModel):
    """The detector half of the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, LabelRules] = Field(default_factory=dict)
    detectors: dict[str, DetectorSwitch] = Field(default_factory=dict)
    banks: BankRules = BankRules()

    @model_validator(mode="after")
    def _known(self) -> DetectorRules:
        """Refuse what the catalogue does not know: a typo would silently ignore scores."""
        for key in self.labels:
            detector, dot, label = key.partition(".")
            entries = [e for n, e in CATALOGUE.items() if fnmatch.fnmatchcase(n, detector)]
            if not dot or not entries:
                raise ValueError(
                    f'[labels."{key}"]: unknown detector {detector!r}, expected '
                    f'"<detector>.<label>" with one of: {", ".join(CATALOGUE)}'
                )
            if not any(
                e.labels is None or any(fnmatch.fnmatchcase(x, label) for x in e.labels)
                for e in entries
            ):
                known = sorted({f"{e.name}.{x}" for e in entries for x in e.labels or ()})
                raise ValueError(f'[labels."{key}"]: unknown label {label!r}; known: {known}')
        for name in self.detectors:
            if name not in CATALOGUE:
                raise ValueError(
                    f"[detectors.{name}]: unknown detector {name!r}; known: {', '.join(CATALOGUE)}"
                )
        return self

    def enabled(self, detector: str, category: str) -> bool:
        switch = self.detectors.get(detector)
        return switch is None or switch.enabled_for(category)

    def rules_for(self, key: str) -> LabelRules | None:
        if key in self.labels:
            return self.labels[key]
        for pattern, rules in self.labels.items():
            if fnmatch.fnmatchcase(key, pattern):
                return rules
        return None

    def decide(self, category: str, photos: Sequence[PhotoResult]) -> tuple[Decision, list[Reason]]:
        """The worst action any detector score calls for, with one reason per hit."""
        decision: Decision = "approve"
        reasons: list[Reason] = []
        for photo in photos:
            for key, score in sorted(photo.detectors.items()):
                rules = self.rules_for(key)
                if rules is None:
                    continue
                limits = rules.for_category(category)
                action: Decision
                if score >= limits.reject:
                    action, threshold = "reject", limits.reject
                elif score >= limits.review:
                    action, threshold = "review", limits.review
                else:
                    continue
                details = [_bank_distance(score, self.banks)] if key.startswith("banks.") else []
                if key in photo.evidence:
                    details.append(photo.evidence[key])
                reasons.append(
                    Reason(
                        code=reason_code(key),
                        photo=photo.index,
                        label=key,
                        score=score,
                        threshold=threshold,
                        action=action,
                        detail=": ".join(details),
                    )
                )
                decision = worst(decision, action)
        return decision, reasons


def _bank_distance(score: float, banks: BankRules) -> str:
    """A bank score is 1 - distance/256: moderators read PDQ distances."""
    return f"PDQ distance {round((1.0 - score) * 256)} <= {banks.max_distance}"
