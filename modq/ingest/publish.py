"""Putting listing events on the broker: the marketplace's entry point into modq.

`submit` / `submit_many` validate before publishing, so a malformed event is reported to the
caller at once instead of surfacing later as a rejected event. They then record the listings in
the intake table of `settings.database_url` BEFORE publishing (`accept_and_publish`): once
`submit` returns, the listing is durable even if the broker loses its message, and `modq
recover` re-publishes it. A producer therefore needs the database URL as well as the broker's.
SQLAlchemy is imported on the first submit only, never by importing this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from modq.domain.contract import read_contract
from modq.domain.envelope import make_body, source_of, summary
from modq.domain.events import ListingEvent, parse_event
from modq.domain.verdicts import Source
from modq.errors import BrokerUnavailable
from modq.ingest.broker import TASK_NAME, create_app, dead_queue
from modq.settings import Settings, get_settings

log = logging.getLogger(__name__)


_apps: dict[str, Celery] = {}


def _app_for(settings: Settings) -> Celery:
    # One app (and connection pool) per broker, not per call.
    if settings.broker_url not in _apps:
        _apps[settings.broker_url] = create_app(settings)
    return _apps[settings.broker_url]


@lru_cache(maxsize=8)
def _labels(model_path: str) -> tuple[str, ...]:
    return tuple(read_contract(Path(model_path)).labels)


def known_categories(settings: Settings) -> tuple[str, ...]:
    """The categories the deployed model knows: its labels are the taxonomy."""
    return _labels(str(settings.model_path))


@contextmanager
def _broker(what: str) -> Iterator[None]:
    """kombu's connection errors (after its own retries) as `BrokerUnavailable`."""
    try:
        yield
    except (OperationalError, ConnectionError) as exc:
        raise BrokerUnavailable(f"broker unavailable while {what}: {exc}") from exc


def queue_for(settings: Settings, source: Source) -> str:
    return settings.queue_backfill if source == "backfill" else settings.queue_new


def _coerce(event: ListingEvent | dict[str, Any], settings: Settings) -> ListingEvent:
    if isinstance(event, ListingEvent):
        return parse_event(event.to_message(), known_categories(settings))
    return parse_event(event, known_categories(settings))


def publish_bodies(
    bodies: Iterable[dict[str, Any]],
    settings: Settings,
    *,
    queue: str,
    countdown: float | None = None,
    batch: bool = False,
) -> int:
    """Send prepared message bodies over one pooled connection.

    `batch` uses kombu's publish batches where it has them (5.7+: one Redis pipeline per 1,000
    messages instead of a round trip each, ~2× faster) for callers that can re-send the whole
    lot on failure (`modq backfill` re-sends its page): a batch is not retried message by
    message, and a failure may leave part of it published.
    """
    app = _app_for(settings)
    sent = 0
    with _broker(f"publishing to {queue}"), app.producer_or_acquire() as producer:
        batching = producer.batch() if batch and hasattr(producer, "batch") else nullcontext()
        with batching:
            for body in bodies:
                app.send_task(
                    TASK_NAME,
                    kwargs=body,
                    queue=queue,
                    countdown=countdown,
                    producer=producer,
                    kwargsrepr=summary(body),
                )
                sent += 1
    return sent


def queue_size(settings: Settings, queue: str) -> int:
    """Messages waiting in `queue`, not counting those a worker has already prefetched.

    Asked through kombu, which knows how its transport stores a queue: on Redis a list named
    after the queue plus one list per priority step (`<queue>\\x06\\x16<n>`, used only by
    messages published with a priority), summed with one pipelined LLEN each.
    """
    app = _app_for(settings)
    with _broker(f"counting {queue}"), app.pool.acquire(block=True) as conn:
        # A non-passive declare: a passive one fails on Redis when the queue is empty.
        ok = conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        return int(ok.message_count)


def accept_and_publish(
    events: Sequence[ListingEvent], settings: Settings, source: Source = "new"
) -> int:
    """Record validated events in the intake table, then publish them.

    Raises `StoreUnavailable` (nothing accepted, nothing sent: the caller retries) or
    `BrokerUnavailable` (accepted but not sent: `modq recover` will send them).
    """
    from modq.store.intake import Accepted, accept, shared_engine

    now = time.time()
    bodies = [make_body(event, source, accepted_at=now) for event in events]
    rows = [
        Accepted(e.listing_id, e.listing_version, body, source)
        for e, body in zip(events, bodies, strict=True)
    ]
    accept(shared_engine(settings.database_url), rows)
    return publish_bodies(bodies, settings, queue=queue_for(settings, source))


def submit_many(
    events: Iterable[ListingEvent | dict[str, Any]],
    *,
    settings: Settings | None = None,
    source: Source = "new",
) -> int:
    """Validate, accept (intake table) and publish events; raises `EventError` on the first
    invalid one, before anything is recorded or sent."""
    settings = settings or get_settings()
    checked = [_coerce(event, settings) for event in events]
    return accept_and_publish(checked, settings, source)


def submit(event: ListingEvent | dict[str, Any], *, settings: Settings | None = None) -> None:
    """Validate, accept and publish one event (needs `MODQ_DATABASE_URL` and
    `MODQ_BROKER_URL`); once it returns the listing is durable."""
    submit_many([event], settings=settings)


def park_dead(bodies: Sequence[dict[str, Any]], settings: Settings, reason: str) -> None:
    """Put bodies in their queue's dead-letter queue (`<queue>.dead`) with the reason, for an
    operator to inspect, replay or drop (`modq dead`)."""
    for body in bodies:
        queue = queue_for(settings, source_of(body))
        log.error("parked in %s: %s", dead_queue(queue), reason)
        publish_bodies([{**body, "error": reason}], settings, queue=dead_queue(queue))


def retry_later(bodies: Sequence[dict[str, Any]], settings: Settings, reason: str) -> None:
    """Re-publish after a transient failure with exponential backoff; park in the dead-letter
    queue once `max_retries` is spent, so nothing is ever dropped.

    The delay is capped at half the visibility timeout: a worker holds a delayed message
    unacknowledged until it is due, and Redis would redeliver one held longer.
    """
    for body in bodies:
        attempt = int(body.get("attempt", 0)) + 1
        queue = queue_for(settings, source_of(body))
        if attempt > settings.max_retries:
            park_dead(
                [{**body, "attempt": attempt}],
                settings,
                f"gave up after {attempt - 1} attempts: {reason}",
            )
            continue
        delay = min(
            settings.retry_backoff_s * 2 ** (attempt - 1), settings.visibility_timeout_s / 2
        )
        log.warning("retrying in %.1fs (attempt %d): %s", delay, attempt, reason)
        publish_bodies([{**body, "attempt": attempt}], settings, queue=queue, countdown=delay)
