"""Listing events: the message the marketplace publishes, and how it is validated.

An event carries ids and photo references only, never image bytes. `parse_event` is used
both by `modq submit` (before publishing) and by the worker (on receipt), so both reject
the same things with the same reasons.

Ids (`listing_id`, `seller_id`) use a safe character set, `ID_PATTERN`: ASCII letters and
digits, then also `.`, `_`, `:` and `-`, at most 128 characters. They appear in URL paths,
logs and SQL keys, so `/ ? # %`, spaces, control characters and `..` never reach them. No
text of an event may hold NUL or a lone UTF-16 surrogate (PostgreSQL cannot store either),
and `listing_version` fits the database's 32-bit column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modq.errors import EventError

SCHEMA_VERSION = 1
MAX_IMAGES = 10
# Longest image reference accepted: URLs in the wild stay far below (browsers and CDNs cap
# near 2,000-8,000 characters); anything longer is refused at parse time, not fetched.
MAX_REF_CHARS = 2048
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_VERSION = 2**31 - 1


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid listing or seller id, or None."""
    if ID_PATTERN.fullmatch(value):
        return None
    return (
        "ids are 1-128 characters: ASCII letters and digits first, then also . _ : -"
        f" (got {len(value)} characters)"
    )


def _unstorable(value: str) -> str | None:
    if "\x00" in value:
        return "holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone UTF-16 surrogate (not valid Unicode text)"
    return None


class ListingEvent(BaseModel):
    """A new or edited listing. An edit bumps `listing_version` and is moderated again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    listing_id: str = Field(min_length=1, max_length=128)
    declared_category: str = Field(min_length=1, max_length=128)
    images: list[str] = Field(min_length=1, max_length=MAX_IMAGES)
    title: str | None = Field(default=None, max_length=1000)
    seller_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    listing_version: int = Field(default=1, ge=1, le=MAX_VERSION)

    @field_validator("listing_id", "seller_id")
    @classmethod
    def _safe_id(cls, value: str | None) -> str | None:
        if value is not None and (problem := id_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("title", "declared_category")
    @classmethod
    def _storable_text(cls, value: str | None) -> str | None:
        if value is not None and (problem := _unstorable(value)):
            raise ValueError(problem)
        return value

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {value} (this worker reads {SCHEMA_VERSION})"
            )
        return value

    @field_validator("images")
    @classmethod
    def _non_empty_refs(cls, value: list[str]) -> list[str]:
        if any(not ref.strip() for ref in value):
            raise ValueError("image references must be non-empty strings")
        for ref in value:
            if problem := _unstorable(ref):
                raise ValueError(f"an image reference {problem}")
        if problem := _overlong_ref(value):
            raise ValueError(problem)
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def to_message(self) -> dict[str, Any]:
        """JSON-safe dict, the body that travels through the broker."""
        return self.model_dump(mode="json")


def _overlong_ref(refs: list[Any]) -> str | None:
    """Why one of `refs` is too long to be a photo reference, or None."""
    for i, ref in enumerate(refs):
        if isinstance(ref, str) and len(ref) > MAX_REF_CHARS:
            return f"images.{i}: image reference is {len(ref)} characters (at most {MAX_REF_CHARS})"
    return None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_event(raw: str | bytes | dict[str, Any], categories: Collection[str]) -> ListingEvent:
    """Validate one event. Raises `EventError` with a reason a human can act on."""
    if isinstance(raw, str | bytes):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventError(f"not JSON: {exc}") from exc
        except RecursionError as exc:
            raise EventError("not JSON this worker reads: nested too deeply") from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise EventError(f"event must be a JSON object, got {type(data).__name__}")
    if isinstance(data.get("images"), list) and len(data["images"]) > MAX_IMAGES:
        raise EventError(f"too many images: {len(data['images'])} (at most {MAX_IMAGES})")
    if isinstance(data.get("images"), list) and (problem := _overlong_ref(data["images"])):
        raise EventError(problem)
    try:
        event = ListingEvent.model_validate(data)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from exc
    if event.declared_category not in categories:
        raise EventError(f"unknown category {event.declared_category!r}")
    return event


def raw_text(raw: str | bytes | dict[str, Any]) -> str:
    """The payload as text, for the `rejected_events` table."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    return json.dumps(raw, default=str)


def latest_versions(events: Sequence[ListingEvent]) -> list[ListingEvent]:
    """One event per listing, the highest version (a later copy wins a tie): a batch may
    hold redeliveries and updates of the same listing."""
    newest: dict[str, ListingEvent] = {}
    for event in events:
        kept = newest.get(event.listing_id)
        if kept is None or event.listing_version >= kept.listing_version:
            newest[event.listing_id] = event
    return list(newest.values())


def as_utc(value: datetime) -> datetime:
    """An aware UTC time; a naive one is taken as UTC (SQLite keeps only wall-clock digits)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
