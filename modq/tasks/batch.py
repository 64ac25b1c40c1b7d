"""What a worker does with one batch of broker messages, failures included.

Transient failures re-queue the batch with backoff; an unexpected error is narrowed down to
the message that causes it, so one poisonous event cannot take its batch-mates with it, and
that event is recorded as rejected with the error as its reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from modq.domain.events import raw_text
from modq.domain.verdicts import RejectedEvent, Source
from modq.errors import RetryableError
from modq.ingest.publish import retry_later
from modq.pipeline.moderate import Runtime, handle_messages
from modq.store import verdicts as store

log = logging.getLogger(__name__)


def run_batch(items: Sequence[tuple[dict[str, Any], dict[str, Any]]], rt: Runtime) -> None:
    """`items` are (message body, delivery info) pairs; backfill and new work are stored with
    their source so verdict history shows why a listing was re-moderated."""
    by_source: dict[Source, list[dict[str, Any]]] = defaultdict(list)
    for body, _delivery in items:
        by_source["backfill" if body.get("source") == "backfill" else "new"].append(body)
    for source, bodies in by_source.items():
        _process(bodies, rt, source)


def _process(bodies: list[dict[str, Any]], rt: Runtime, source: Source) -> None:
    try:
        outcome = handle_messages(bodies, rt, source)
    except RetryableError as exc:
        retry_later(bodies, rt.settings, str(exc))
        return
    except Exception as exc:
        if len(bodies) > 1:
            log.exception("batch of %d failed; retrying its messages one by one", len(bodies))
            for body in bodies:
                _process([body], rt, source)
            return
        log.exception("message failed; recording it as rejected")
        _reject(bodies[0], rt, f"internal_error: {type(exc).__name__}: {exc}")
        return
    log.info(
        "batch: %d verdicts, %d rejected events (%s)",
        len(outcome.verdicts),
        len(outcome.rejected),
        source,
    )


def _reject(body: dict[str, Any], rt: Runtime, reason: str) -> None:
    raw = body.get("event", body)
    listing_id = raw.get("listing_id") if isinstance(raw, dict) else None
    rejected = RejectedEvent(
        stage="worker",
        reason=reason,
        payload=raw_text(raw),
        listing_id=str(listing_id) if listing_id is not None else None,
    )
    try:
        store.record_rejected(rt.engine, [rejected])
    except RetryableError as exc:
        retry_later([body], rt.settings, str(exc))
