"""`modq backfill`: moderate old listings again on the backfill queue, bounded and resumable.

This module runs a job: it walks the selection page by page, waits for room under the
high-water mark, publishes, and checkpoints. The parts it drives:

- `modq.backfill.selection`: which listings (keyset pages over `listings`, or an ids file) and
  the "already current" rule; `modq.backfill.export_file`: events from an export file.
- `modq.store.checkpoints`: the checkpoint row in `backfill_jobs` and the per-job lock.
- `modq.store.backfill`: the SQL behind the selection.

Before publishing a page the command waits until the backfill queue plus that page fits under
`backfill_high_water`, so Redis holds a bounded number of backfill messages however large the
selection; workers set the pace. Each page is recorded in the intake table before it is
published, as `submit` records new listings, so `modq recover` re-sends to the backfill queue
what a broker lost. The checkpoint advances right after each page is published, so
queueing is at-least-once with at most one page queued twice after a kill; verdicts stay
exactly-once because the worker upserts on (listing, version, model, policy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from modq.backfill.export_file import count_export_lines, export_pages
from modq.backfill.selection import (
    Deployed,
    Page,
    Selection,
    count_table,
    ids_after,
    ids_pages,
    read_ids,
    table_pages,
)
from modq.domain.envelope import event_of
from modq.errors import BackfillError
from modq.ingest.publish import publish_bodies, queue_size
from modq.settings import Settings
from modq.store.checkpoints import (
    Counts,
    advance_checkpoint,
    default_job_name,
    finish_job,
    job_lock,
    start_job,
)
from modq.store.database import Engine
from modq.store.intake import Accepted, accept

log = logging.getLogger(__name__)

PAGE_SIZE = 500
POLL_S = 0.5
# Reasons kept in the report for the terminal; every one is also counted (and, for events,
# recorded in rejected_events).
MAX_PROBLEMS = 20


@dataclass
class BackfillReport:
    job: str
    counts: Counts  # this job's totals, earlier runs included
    this_run: Counts
    resumed: bool = False
    already_finished: bool = False
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        text = f"queued {c.queued}, skipped {c.skipped}, already current {c.already_current}"
        if c.not_selected:
            text += f", not selected {c.not_selected}"
        return text


def _wait_for_room(settings: Settings, incoming: int, high_water: int, bar: tqdm[Any]) -> None:
    """Block until `incoming` more messages keep the backfill queue at or under the mark."""
    waiting = False
    while True:
        depth = queue_size(settings, settings.queue_backfill)
        if depth + incoming <= high_water:
            if waiting:
                bar.set_postfix_str("", refresh=True)
            return
        if not waiting:
            log.info("backfill queue at %d, high-water %d: waiting for workers", depth, high_water)
        waiting = True
        bar.set_postfix_str(
            f"waiting for workers: queue at {depth:,} + page {incoming:,} > high-water "
            f"{high_water:,}",
            refresh=True,
        )
        time.sleep(POLL_S)


def _intake_rows(bodies: list[dict[str, Any]]) -> list[Accepted]:
    rows = []
    for body in bodies:
        event = event_of(body)
        rows.append(
            Accepted(str(event["listing_id"]), int(event.get("listing_version") or 1), body,
                     "backfill")
        )  # fmt: skip
    return rows


def run_backfill(
    engine: Engine,
    settings: Settings,
    selection: Selection,
    *,
    job: str | None = None,
    restart: bool = False,
    dry_run: bool = False,
    page_size: int = PAGE_SIZE,
    high_water: int | None = None,
    progress: bool = True,
) -> BackfillReport:
    """Queue the selection on `settings.queue_backfill`, resuming job `job` (default: a name
    derived from the selection and the deployed versions) where it stopped.

    `dry_run` walks what is left of the selection and counts, publishing nothing and leaving the
    checkpoint alone.
    """
    selection.check()
    high_water = high_water or settings.backfill_high_water
    if page_size < 1:
        raise BackfillError("page size must be at least 1")
    # A page that does not fit under the mark could never be published.
    page_size = min(page_size, high_water)
    deployed = Deployed.from_settings(settings)
    spec = selection.spec(deployed)
    name = job or default_job_name(spec)

    with nullcontext() if dry_run else job_lock(engine, name):
        state = start_job(engine, name, spec, restart, write=not dry_run)
        report = BackfillReport(
            job=name, counts=state.counts, this_run=Counts(), resumed=state.resumed, dry_run=dry_run
        )
        if state.finished:
            report.already_finished = True
            return report

        pages: Iterator[Page]
        if selection.from_file is not None:
            remaining = count_export_lines(selection.from_file, state.last_line)
            pages = export_pages(engine, selection, deployed, state.last_line, page_size)
        elif selection.ids_file is not None:
            ids = ids_after(read_ids(selection.ids_file), state.last_listing_id)
            remaining = len(ids)
            pages = ids_pages(engine, selection, deployed, ids, page_size)
        else:
            remaining = count_table(engine, selection, deployed, state.last_listing_id)
            pages = table_pages(engine, selection, deployed, state.last_listing_id, page_size)

        with tqdm(
            total=state.counts.done + remaining,
            initial=state.counts.done,
            desc=f"{'dry run ' if dry_run else ''}{name}",
            unit=" listings",
            disable=not progress,
            mininterval=0.5,
            dynamic_ncols=True,
        ) as bar:
            for page in pages:
                if not dry_run:
                    if page.bodies:
                        _wait_for_room(settings, len(page.bodies), high_water, bar)
                        # Recorded before it is published, as `submit` does: a broker that
                        # loses the page loses nothing `modq recover` cannot send again.
                        accept(engine, _intake_rows(page.bodies), keep_open=True)
                        publish_bodies(
                            page.bodies, settings, queue=settings.queue_backfill, batch=True
                        )
                    advance_checkpoint(
                        engine,
                        name,
                        page.counts,
                        last_listing_id=page.last_listing_id,
                        last_line=page.last_line,
                        rejected=page.rejected,
                    )
                report.counts.add(page.counts)
                report.this_run.add(page.counts)
                room = MAX_PROBLEMS - len(report.problems)
                report.problems += page.problems[: max(room, 0)]
                bar.update(page.size)
        if not dry_run:
            finish_job(engine, name)
    return report
