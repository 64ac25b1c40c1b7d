"""`modq recover`: re-publish accepted listings that have no verdict or rejection yet.

The intake table (`modq.store.intake`) holds every listing `submit` accepted; the worker closes
a row in the transaction that stores its outcome. A row still open after a grace period lost
its message (a broker restarted without persistence, a publish that failed after the accept)
or is still on its way: re-publishing is harmless either way, since verdicts are upserts and
the worker closes the row once, so the grace period only saves needless work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modq.ingest.publish import publish_bodies, queue_for
from modq.settings import Settings
from modq.store.intake import Accepted, open_rows, shared_engine, touch

log = logging.getLogger(__name__)

PAGE = 1000


@dataclass
class RecoverReport:
    requeued: int = 0
    pages: int = 0


def recover(
    settings: Settings, older_than_s: float = 60.0, limit: int | None = None
) -> RecoverReport:
    """Re-publish open intake rows accepted more than `older_than_s` ago (at most `limit`).

    Each page is re-published, then its rows' grace period restarts (`touch`), so a second
    recovery started at once does not send them again, and a row published but not touched
    (a crash in between) is only sent twice, never lost.
    """
    engine = shared_engine(settings.database_url)
    report = RecoverReport()
    while limit is None or report.requeued < limit:
        size = PAGE if limit is None else min(PAGE, limit - report.requeued)
        rows = open_rows(engine, older_than_s, size)
        if not rows:
            break
        for source in ("new", "backfill"):
            mine = [r for r in rows if r.source == source]
            if mine:
                publish_bodies(
                    [_body(r) for r in mine], settings, queue=queue_for(settings, source)
                )
        touch(engine, rows)
        report.requeued += len(rows)
        report.pages += 1
        log.info("recover: re-published %d listings", report.requeued)
        if len(rows) < size:
            break
    return report


def _body(row: Accepted) -> dict[str, object]:
    # A recovered message starts its retries afresh.
    return {**row.body, "attempt": 0}
