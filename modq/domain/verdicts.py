"""Typed messages passed between pipeline stages.

They carry ids, references, scores and reasons; never image bytes or ORM objects, so
any stage can be serialised, logged or moved to another process.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modq.domain.reasons import Reason, read_all

Decision = Literal["approve", "reject", "review"]
Source = Literal["new", "backfill"]
Stage = Literal["submit", "worker"]
Scored = tuple[str, float]

DECISIONS: tuple[Decision, ...] = get_args(Decision)
SOURCES: tuple[Source, ...] = get_args(Source)
STAGES: tuple[Stage, ...] = get_args(Stage)


class PhotoResult(BaseModel):
    """What the model (and detectors) said about one photo, or why it could not say."""

    model_config = ConfigDict(frozen=True)

    index: int
    ref: str
    top: list[Scored] = Field(default_factory=list)
    declared_prob: float | None = None
    # Detector scores keyed "detector.label", e.g. "prohibited.firearm".
    detectors: dict[str, float] = Field(default_factory=dict)
    # What backs a detector score, by the same key: for "banks.<NAME>" the matched hash's
    # content id and note (shown in the verdict's reason).
    evidence: dict[str, str] = Field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None
    fetch_ms: float = 0.0
    decode_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_code is None


class Verdict(BaseModel):
    """The decision for one listing version under one model and one policy."""

    model_config = ConfigDict(frozen=True)

    listing_id: str
    listing_version: int
    declared_category: str
    decision: Decision
    # Structured since 0010_structured_reasons; a message or row from before holds strings,
    # which `_read_reasons` turns into `Reason`s (old clients stay readable).
    reasons: list[Reason]
    suggested: list[Scored]
    best_photo: int | None
    # Category probabilities aggregated over the readable photos.
    scores: dict[str, float]
    photos: list[PhotoResult]
    model_version: str
    policy_version: str
    timings: dict[str, float] = Field(default_factory=dict)
    source: Source = "new"

    @field_validator("reasons", mode="before")
    @classmethod
    def _read_reasons(cls, value: Any) -> Any:
        return read_all(value) if isinstance(value, list) else value


class RejectedEvent(BaseModel):
    """An event that could not be moderated at all, kept with its raw payload and reason."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    reason: str
    payload: str
    listing_id: str | None = None
    # The version the event named, where it had one: which intake row the rejection closes.
    listing_version: int | None = None
