"""`modq recover`: re-publish accepted listings that have no verdict or rejection yet.

The intake table (`modq.store.intake`) holds every listing `submit` accepted; the worker closes
a row in the transaction that stores its outcome. A row still open after a grace period lost
its message (a broker restarted without persistence, a publish that failed after the accept)
or is still on its way: re-publishing is harmless either way, since verdicts are upserts and
the worker closes the row once, so the grace period only saves needless work. Backfill rows
(recorded by `modq backfill`) go back to the backfill queue, never the new one. Each pass also
prunes closed rows (`intake_keep_days`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modq.domain.verdicts import Source
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


def recover(
    settings: Settings, older_than_s: float = 60.0, limit: int | None = None
) -> RecoverReport:
    """Re-publish open intake rows accepted more than `older_than_s` ago (at most `limit`),
    then prune closed rows older than `settings.intake_keep_days`.

    New listings go back to the new queue. Backfill rows go back to the backfill queue, and
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
    _republish(settings, older_than_s, limit, "new", report)
    left = None if limit is None else limit - report.requeued
    if (left is None or left > 0) and queue_size(settings, settings.queue_backfill) == 0:
        cap = (
            settings.backfill_high_water
            if left is None
            else min(left, settings.backfill_high_water)
        )
        before = report.requeued
        _republish(settings, older_than_s, cap, "backfill", report)
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
) -> None:
    engine = shared_engine(settings.database_url)
    sent = 0
    while limit is None or sent < limit:
        size = PAGE if limit is None else min(PAGE, limit - sent)
        rows = open_rows(engine, older_than_s, size, source=source)
        if not rows:
            break
        publish_bodies([_body(r) for r in rows], settings, queue=queue_for(settings, source))
        touch(engine, rows)
        sent += len(rows)
        report.requeued += len(rows)
        report.pages += 1
        log.info("recover: re-published %d %s listings", sent, source)
        if len(rows) < size:
            break


def _body(row: Accepted) -> dict[str, object]:
    # A recovered message starts its retries afresh.
    return {**row.body, "attempt": 0}
