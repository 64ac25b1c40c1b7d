"""The policy: turns model and detector scores into approve / reject / review with
machine-readable reasons.

Thresholds live in a versioned TOML file (modq/assets/policies/default.toml), never in code,
so trust and safety can tune them without a deploy of new code and every verdict records the
policy version that produced it. The category rules are in `modq.policy.category`, the detector
rules in `modq.policy.detector_rules`; `Policy.decide` combines them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modq.domain.events import ListingEvent
from modq.domain.reasons import Reason
from modq.domain.verdicts import Decision, PhotoResult
from modq.errors import ConfigError
from modq.policy.category import CategoryDecision, CategoryRules, PhotoRules, decide_category
from modq.policy.combine import worst
from modq.policy.detector_rules import BankRules, DetectorRules, DetectorSwitch, LabelRules


@dataclass(frozen=True)
class ListingDecision:
    """The policy's answer for one listing: the category half and the detectors' reasons."""

    decision: Decision
    reasons: list[Reason]
    category: CategoryDecision


class Policy(BaseModel):
    # A table this version does not know is refused by name (a typo must not pass silently).
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    category: CategoryRules = CategoryRules()
    photos: PhotoRules = PhotoRules()
    # Detector scores: per-label thresholds and exceptions, where detectors run, PDQ matching.
    labels: dict[str, LabelRules] = Field(default_factory=dict)
    detectors: dict[str, DetectorSwitch] = Field(default_factory=dict)
    banks: BankRules = BankRules()

    @model_validator(mode="before")
    @classmethod
    def _known_tables(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown table or key {unknown[0]!r}; known: {', '.join(cls.model_fields)}"
                )
        return data

    @model_validator(mode="after")
    def _known_detectors(self) -> Policy:
        self.detector_rules  # noqa: B018 (validates labels and detectors against the catalogue)
        return self

    @property
    def detector_rules(self) -> DetectorRules:
        return DetectorRules(labels=self.labels, detectors=self.detectors, banks=self.banks)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"policy file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"policy file {path}: {exc}") from exc

    def decide_category(
        self,
        event: ListingEvent,
        photos: Sequence[PhotoResult],
        probs: npt.NDArray[np.float32],
        labels: Sequence[str],
    ) -> CategoryDecision:
        """The category half alone (see `modq.policy.category.decide_category`)."""
        return decide_category(self.category, self.photos, event, photos, probs, labels)

    def decide(
        self,
        event: ListingEvent,
        photos: Sequence[PhotoResult],
        probs: npt.NDArray[np.float32],
        labels: Sequence[str],
    ) -> ListingDecision:
        """Both halves: the category decision and every detector hit; the worst one wins."""
        category = self.decide_category(event, photos, probs, labels)
        found, reasons = self.detector_rules.decide(event.declared_category, photos)
        return ListingDecision(
            decision=worst(category.decision, found),
            reasons=[*category.reasons, *reasons],
            category=category,
        )
