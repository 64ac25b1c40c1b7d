"""What a worker does with one batch of broker messages, failures included.

Transient failures re-queue the batch with backoff; an unexpected error is narrowed down to
the message that causes it, so one poisonous event cannot take its batch-mates with it, and
that event is recorded as rejected with the error as its reason. A message that killed its
worker `max_deliveries` times is parked in `<queue>.dead` before it can do it again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from modq.domain.envelope import rejected, source_of
from modq.domain.verdicts import Source
from modq.errors import ConfigError, RetryableError
from modq.ingest.publish import park_dead, retry_later
from modq.pipeline.moderate import handle_messages
from modq.pipeline.runtime import Runtime
from modq.tasks import metrics

log = logging.getLogger(__name__)


def run_batch(
    bodies: Sequence[dict[str, Any]], rt: Runtime, starts: Sequence[int] | None = None
) -> None:
    """Moderate and store message bodies; backfill and new work are stored with their source
    so verdict history shows why a listing was re-moderated.

    `starts` (how many times each message's batch has started, `modq.ingest.probe`)
    sends poison messages, started more than `max_deliveries` times, to `<queue>.dead`.
    """
    by_source: dict[Source, list[dict[str, Any]]] = defaultdict(list)
    limit = rt.settings.max_deliveries
    for body, started in zip(bodies, starts or [1] * len(bodies), strict=True):
        if started > limit:
            _park_poison(body, rt, started - 1)
            continue
        by_source[source_of(body)].append(body)
    for source, group in by_source.items():
        _process(group, rt, source)


def _retry(bodies: list[dict[str, Any]], rt: Runtime, reason: str) -> None:
    spent = sum(int(b.get("attempt", 0)) + 1 > rt.settings.max_retries for b in bodies)
    metrics.RETRIES.inc(len(bodies) - spent)
    metrics.DEAD.labels("retries_spent").inc(spent)
    retry_later(bodies, rt.settings, reason)


def _process(bodies: list[dict[str, Any]], rt: Runtime, source: Source) -> None:
    started = time.perf_counter()
    try:
        outcome = handle_messages(bodies, rt, source)
    except RetryableError as exc:
        _retry(bodies, rt, str(exc))
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
    elapsed = time.perf_counter() - started
    metrics.observe_batch(bodies, outcome.verdicts, outcome.rejected, source, elapsed)
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
        _retry([body], rt, str(exc))
        return
    metrics.LISTINGS.labels(source_of(body), "rejected").inc()


def _park_poison(body: dict[str, Any], rt: Runtime, starts: int) -> None:
    """A message whose worker died every time it ran: recorded as rejected (which closes its
    intake row, so `modq recover` leaves it alone) and parked for an operator to replay."""
    reason = f"dead_letter: its batch started {starts} times without finishing (worker died?)"
    if rt.verdict_store is not None:
        try:
            rt.verdict_store.record_rejected([rejected(body, reason)])
        except RetryableError as exc:  # still open in intake: recover re-queues it later
            log.warning("could not record the poison message: %s", exc)
    metrics.DEAD.labels("poison").inc()
    park_dead([body], rt.settings, reason)
