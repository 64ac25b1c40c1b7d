"""`modq recover`: re-publish accepted listings that have no verdict or rejection yet.

The intake table (`modq.store.intake`) holds every listing `submit` accepted; the worker closes
a row in the transaction that stores its outcome. A row still open after a grace period lost
its message (a broker restarted without persistence, a publish that failed after the accept)
or is still on its way: re-publishing is harmless either way, since verdicts are upserts and
the worker closes the row once, so the grace period only saves needless work. A row accepted
after the oldest message still waiting in the new queue may be waiting there too, so it is
left alone whatever its age (a backlog is not re-sent every pass). Backfill rows
(recorded by `modq backfill`) go back to the backfill queue, never the new one. Each pass also
prunes closed rows (`intake_keep_days`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis

from modq.domain.verdicts import Source
from modq.errors import BrokerUnavailable
from modq.ingest.publish import publish_bodies, queue_for, queue_size
from modq.settings import Settings
from modq.store.intake import Accepted, open_rows, prune, shared_engine, touch

log = logging.getLogger(__name__)

PAGE = 1000
PRUNE_CHUNK = 10_000  # closed rows deleted a pass at most: one short transaction


@dataclass
class RecoverReport:
    requeued: int = 0  # both queues
    pages: int = 0
    backfill: int = 0  # of `requeued`, sent to the backfill queue
    pruned: int = 0  # closed rows deleted (older than `intake_keep_days`)
    held: int = 0  # open rows left alone because a worker holds their message


def recover(
    settings: Settings, older_than_s: float = 60.0, limit: int | None = None
) -> RecoverReport:
    """Re-publish open intake rows accepted more than `older_than_s` ago (at most `limit`),
    then prune closed rows older than `settings.intake_keep_days`.

    New listings go back to the new queue, those accepted before the oldest message still
    waiting there only (`_waiting_since`): the queue is first in, first out, so an older open
    row is not in it (lost, or taken by a worker), while a newer one may simply wait its turn
    behind a backlog. A row whose message a worker holds unacknowledged is left alone too
    (`_held_by_workers`). Backfill rows go back to the backfill queue, and
    only while it is empty: a healthy backfill keeps up to `backfill_high_water` messages
    waiting there for longer than any grace period, and re-sending those would double the
    queue every pass; after a broker loss the queue is empty, and at most one high-water
    mark of rows is sent a pass, as `modq backfill` itself would.

    Each page is re-published, then its rows' grace period restarts (`touch`), so a second
    recovery started at once does not send them again, and a row published but not touched
    (a crash in between) is only sent twice, never lost.
    """
    engine = shared_engine(settings.database_url)
    report = RecoverReport()
    held = _held_by_workers(settings)
    _republish(settings, older_than_s, limit, "new", report, held, _waiting_since(settings))
    left = None if limit is None else limit - report.requeued
    if (left is None or left > 0) and queue_size(settings, settings.queue_backfill) == 0:
        cap = (
            settings.backfill_high_water
            if left is None
            else min(left, settings.backfill_high_water)
        )
        before = report.requeued
        _republish(settings, older_than_s, cap, "backfill", report, held)
        report.backfill = report.requeued - before
    report.pruned = prune(engine, settings.intake_keep_days * 86_400, PRUNE_CHUNK)
    if report.pruned:
        log.info("recover: pruned %d closed intake rows", report.pruned)
    return report


def _republish(
    settings: Settings,
    older_than_s: float,
    limit: int | None,
    source: Source,
    report: RecoverReport,
    held: set[tuple[str, int]],
    before: float | None = None,
) -> None:
    engine = shared_engine(settings.database_url)
    sent = 0
    while limit is None or sent < limit:
        size = PAGE if limit is None else min(PAGE, limit - sent)
        found = open_rows(engine, older_than_s, size, source=source, before=before)
        if not found:
            break
        # A listing a worker holds (kombu's unacknowledged record) is running, or comes back
        # by itself after the visibility timeout: restart its grace period, send nothing.
        rows = [r for r in found if (r.listing_id, r.listing_version) not in held]
        if len(rows) < len(found):
            touch(engine, [r for r in found if (r.listing_id, r.listing_version) in held])
            report.held += len(found) - len(rows)
        publish_bodies([_body(r) for r in rows], settings, queue=queue_for(settings, source))
        touch(engine, rows)
        sent += len(rows)
        report.requeued += len(rows)
        report.pages += 1
        log.info("recover: re-published %d %s listings", sent, source)
        if len(found) < size:
            break


def _body(row: Accepted) -> dict[str, object]:
    # A recovered message starts its retries afresh; `requeued_at` dates it in the queue
    # (`_waiting_since`), while `accepted_at` keeps measuring latency from the submit.
    return {**row.body, "attempt": 0, "requeued_at": time.time()}


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _held_by_workers(settings: Settings) -> set[tuple[str, int]]:
    """(listing id, version) of every message a worker has taken and not acknowledged yet,
    from kombu's Redis record of them (the `unacked` hash: at most the workers' prefetch).
    Such a message is running, or kombu gives it back to its queue after the visibility
    timeout if its worker died: a copy from recovery would be work done twice. Empty for
    other brokers."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return set()
    try:
        values = _redis(settings.broker_url).hvals("unacked")
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"broker unavailable while reading held messages: {exc}") from exc
    held = set()
    for value in values:
        body = _body_of(value, held=True)
        event = body.get("event") if body else None
        if isinstance(event, dict) and event.get("listing_id") is not None:
            held.add((str(event["listing_id"]), int(event.get("listing_version") or 1)))
    return held


def _body_of(raw: bytes | str, held: bool = False) -> dict[str, Any] | None:
    """The Celery kwargs (modq's body) of a kombu message as Redis stores it in a queue (or,
    `held`, in the `unacked` hash: [message, exchange, routing key]); None if it is not one."""
    try:
        message = json.loads(raw)
        if held:
            message = message[0]
        _args, body, _embed = json.loads(base64.b64decode(message["body"]))
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return body if isinstance(body, dict) else None


def _waiting_since(settings: Settings) -> float | None:
    """When the oldest message still waiting in the new queue was published (Unix time), or
    None: an empty queue, a message from an older producer (no date), another broker.

    Kombu's Redis transport pushes on the left and takes from the right of one list per queue
    (modq publishes no priorities, so there is only the one), so the message at index -1 is
    the oldest.
    """
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    try:
        raw = _redis(settings.broker_url).lindex(settings.queue_new, -1)
    except redis.RedisError as exc:
        raise BrokerUnavailable(
            f"broker unavailable while reading {settings.queue_new}: {exc}"
        ) from exc
    if raw is None:
        return None
    body = _body_of(raw)
    stamp = body.get("requeued_at") or body.get("accepted_at") if body else None
    if not isinstance(stamp, int | float):
        log.warning("recover: cannot date the oldest message in %s", settings.queue_new)
        return None
    return float(stamp)
