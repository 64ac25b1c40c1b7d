"""The broker message body that carries one listing event: `{"event", "source", "attempt"}`,
plus `accepted_at` from newer producers (optional: older bodies are read the same way).

This format is the contract between producers (`modq submit`, `modq backfill`, a marketplace
calling `modq.ingest.publish.submit`) and workers, so a message published by an older modq is
still read by a newer one. A body carries ids and URLs, never image bytes.
"""

from __future__ import annotations

from typing import Any

from modq.domain.events import ListingEvent, raw_text
from modq.domain.verdicts import RejectedEvent, Source


def make_body(
    event: ListingEvent, source: Source, attempt: int = 0, accepted_at: float | None = None
) -> dict[str, Any]:
    """A message body; `accepted_at` (Unix time `submit` accepted the listing, newer modq
    only) lets the worker measure latency from acceptance."""
    body: dict[str, Any] = {"event": event.to_message(), "source": source, "attempt": attempt}
    if accepted_at is not None:
        body["accepted_at"] = accepted_at
    return body


def event_of(body: dict[str, Any]) -> Any:
    """The raw event of a body; a bare event (no envelope) is accepted as its own body."""
    return body.get("event", body)


def source_of(body: dict[str, Any]) -> Source:
    return "backfill" if body.get("source") == "backfill" else "new"


def listing_id_of(body: dict[str, Any]) -> str | None:
    raw = event_of(body)
    listing_id = raw.get("listing_id") if isinstance(raw, dict) else None
    return str(listing_id) if listing_id is not None else None


def listing_version_of(body: dict[str, Any]) -> int | None:
    """The version a body's event names (1, the default, when it names none)."""
    raw = event_of(body)
    if not isinstance(raw, dict):
        return None
    version = raw.get("listing_version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def rejected(body: dict[str, Any], reason: str) -> RejectedEvent:
    """A body the worker could not moderate, kept with its raw event and the reason."""
    return RejectedEvent(
        stage="worker",
        reason=reason,
        payload=raw_text(event_of(body)),
        listing_id=listing_id_of(body),
        listing_version=listing_version_of(body),
    )


def summary(body: dict[str, Any]) -> str:
    """What monitoring shows of a message: the listing, not Celery's saferepr of the whole
    event (which costs more than the rest of the publish)."""
    event = event_of(body)
    version = event.get("listing_version") if isinstance(event, dict) else None
    return repr(
        {
            "listing_id": listing_id_of(body),
            "listing_version": version,
            "source": body.get("source"),
            "attempt": body.get("attempt"),
        }
    )
