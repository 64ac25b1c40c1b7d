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

from modq.domain.envelope import rejected, source_of
from modq.domain.verdicts import Source
from modq.errors import ConfigError, RetryableError
from modq.ingest.publish import retry_later
from modq.pipeline.moderate import handle_messages
from modq.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def run_batch(bodies: Sequence[dict[str, Any]], rt: Runtime) -> None:
    """Moderate and store message bodies; backfill and new work are stored with their source
    so verdict history shows why a listing was re-moderated."""
    by_source: dict[Source, list[dict[str, Any]]] = defaultdict(list)
    for body in bodies:
        by_source[source_of(body)].append(body)
    for source, group in by_source.items():
        _process(group, rt, source)


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
    if rt.verdict_store is None:
        raise ConfigError("this runtime has no verdict store: build it with stores")
    try:
        rt.verdict_store.record_rejected([rejected(body, reason)])
    except RetryableError as exc:
        retry_later([body], rt.settings, str(exc))
