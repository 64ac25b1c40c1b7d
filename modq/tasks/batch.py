"""What a worker does with one batch of broker messages, failures included.

Transient failures re-queue the batch with backoff; an unexpected error is narrowed down to
the message that causes it, so one poisonous event cannot take its batch-mates with it, and
that event is recorded as rejected with the error as its reason. Messages that were in flight
when a worker died run one at a time; one that killed its worker `max_deliveries` times is
parked in `<queue>.dead` before it can do it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from modq.domain.envelope import rejected, source_of
from modq.domain.verdicts import Source
from modq.errors import ConfigError, RetryableError
from modq.ingest import probe
from modq.ingest.publish import park_dead, retry_later
from modq.pipeline.moderate import handle_messages
from modq.pipeline.runtime import Runtime
from modq.tasks import metrics

log = logging.getLogger(__name__)

# One suspect at a time in this process, across the batches in flight (`modq worker -c 2`):
# when the worker dies, the only message counted as running is the one that was, so a
# message that happened to run beside a killer is never charged with its deaths.
_SUSPECT = threading.Lock()


def run_batch(
    bodies: Sequence[dict[str, Any]], rt: Runtime, ids: Sequence[str] | None = None
) -> None:
    """Moderate and store message bodies; backfill and new work are stored with their source
    so verdict history shows why a listing was re-moderated.

    `ids` (the messages' task ids) drive the poison-message check (`modq.ingest.probe`);
    without them nothing is counted.

    Messages never started before run together, their starts counted at once. A message
    already started without an outcome was in flight when a worker died: each such *suspect*
    runs alone, its start counted just before it runs and forgotten as soon as it has an
    outcome, and only one suspect runs at a time in the process (the other batch in flight
    waits for it). So a worker that dies again counts one more start against the message it
    was running, not against its batch-mates or a suspect of the other batch; a suspect
    started more than `max_deliveries` times goes to `<queue>.dead`.
    """
    if ids is None:
        _run_by_source(bodies, rt)
        return
    before = probe.previous_starts(rt.settings, ids)
    fresh = [(body, i) for body, i, n in zip(bodies, ids, before, strict=True) if n == 0]
    suspects = [(body, i) for body, i, n in zip(bodies, ids, before, strict=True) if n > 0]
    if fresh:
        probe.count_starts(rt.settings, [i for _, i in fresh])
        _run_by_source([body for body, _ in fresh], rt)
        probe.forget(rt.settings, [i for _, i in fresh])
    for body, task_id in suspects:
        with _SUSPECT:
            (started,) = probe.count_starts(rt.settings, [task_id])
            if started > rt.settings.max_deliveries:
                _park_poison(body, rt, started - 1)
            else:
                log.warning("message %s was in flight when a worker died: running it alone",
                            task_id)  # fmt: skip
                _run_by_source([body], rt)
            probe.forget(rt.settings, [task_id])


def _run_by_source(bodies: Sequence[dict[str, Any]], rt: Runtime) -> None:
    by_source: dict[Source, list[dict[str, Any]]] = defaultdict(list)
    for body in bodies:
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
