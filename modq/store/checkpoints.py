"""The `modq backfill` checkpoint: one row of `backfill_jobs` per job, and one process per job.

The cursor and the counts advance in one transaction right after each page is published. A kill
between publish and commit re-publishes that one page on restart, so queueing is at-least-once
with at most one page queued twice; verdicts stay exactly-once because the worker upserts on
(listing, version, model, policy). A PostgreSQL advisory lock keeps a second process off a job
that is already running.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modq.domain.verdicts import RejectedEvent
from modq.errors import BackfillError
from modq.store.database import unavailable
from modq.store.schema import backfill_jobs
from modq.store.verdicts import insert_rejected


def default_job_name(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "backfill-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Counts:
    """A job's counters: what happened to each listing or line it went through."""

    queued: int = 0
    skipped: int = 0  # could not be queued: invalid event or stored row, unknown listing id
    already_current: int = 0
    not_selected: int = 0  # export-file lines outside --category/--since/--until

    @property
    def done(self) -> int:
        return self.queued + self.skipped + self.already_current + self.not_selected

    def add(self, other: Counts) -> None:
        self.queued += other.queued
        self.skipped += other.skipped
        self.already_current += other.already_current
        self.not_selected += other.not_selected


@dataclass
class JobState:
    """A job's checkpoint as the run finds it: where to resume and the counts so far."""

    counts: Counts
    last_listing_id: str | None
    last_line: int | None
    finished: bool
    resumed: bool


@contextmanager
def job_lock(engine: Engine, name: str) -> Iterator[None]:
    """One running command per job: a PostgreSQL session advisory lock, released when the
    command ends or its connection drops (a killed command frees it at once)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"modq-backfill:{name}".encode()).digest()[:8], "big")
    key -= 1 << 63  # into bigint range
    with unavailable("locking the backfill job"), engine.connect() as conn:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        conn.commit()  # the lock is the session's: no transaction left idle while we run
        if not got:
            raise BackfillError(f"backfill job {name!r} is already running in another process")
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except sa.exc.SQLAlchemyError:
                # The connection is gone, and the lock with it; keep the original error.
                conn.invalidate()


def start_job(
    engine: Engine, name: str, spec: dict[str, Any], restart: bool, write: bool
) -> JobState:
    """The job's checkpoint to resume from; a new (or restarted) job's row is written unless
    `write` is false (a dry run)."""
    with unavailable("starting the backfill job"), engine.begin() as conn:
        return _load_job(conn, name, spec, restart, write)


def _load_job(
    conn: Connection, name: str, spec: dict[str, Any], restart: bool, write: bool
) -> JobState:
    row = conn.execute(sa.select(backfill_jobs).where(backfill_jobs.c.name == name)).first()
    if row is not None and not restart:
        stored = row._mapping
        if stored["selection"] != spec:
            raise BackfillError(
                f"backfill job {name!r} was started with another selection "
                f"({json.dumps(stored['selection'], sort_keys=True)}); "
                "use --restart to start it over with this one, or another --job name"
            )
        counts = Counts(
            stored["queued"], stored["skipped"], stored["already_current"], stored["not_selected"]
        )
        return JobState(
            counts,
            stored["last_listing_id"],
            stored["last_line"],
            finished=stored["finished_at"] is not None,
            resumed=counts.done > 0,
        )
    if write:
        fresh = {
            "selection": spec,
            "last_listing_id": None,
            "last_line": None,
            "queued": 0,
            "skipped": 0,
            "already_current": 0,
            "not_selected": 0,
            "finished_at": None,
        }
        if row is None:
            conn.execute(sa.insert(backfill_jobs).values(name=name, **fresh))
        else:
            conn.execute(
                sa.update(backfill_jobs)
                .where(backfill_jobs.c.name == name)
                .values(**fresh, started_at=sa.func.now(), updated_at=sa.func.now())
            )
    return JobState(Counts(), None, None, finished=False, resumed=False)


def advance_checkpoint(
    engine: Engine,
    name: str,
    c: Counts,
    *,
    last_listing_id: str | None,
    last_line: int | None,
    rejected: Sequence[RejectedEvent],
) -> None:
    """Move the cursor past a published page, in the same transaction as its counts and its
    rejected events: after a kill, either all of them moved or none did."""
    values: dict[str, Any] = {
        "queued": backfill_jobs.c.queued + c.queued,
        "skipped": backfill_jobs.c.skipped + c.skipped,
        "already_current": backfill_jobs.c.already_current + c.already_current,
        "not_selected": backfill_jobs.c.not_selected + c.not_selected,
        "updated_at": sa.func.now(),
    }
    if last_listing_id is not None:
        values["last_listing_id"] = last_listing_id
    if last_line is not None:
        values["last_line"] = last_line
    with unavailable("advancing the backfill checkpoint"), engine.begin() as conn:
        insert_rejected(conn, rejected)
        conn.execute(sa.update(backfill_jobs).where(backfill_jobs.c.name == name).values(**values))


def finish_job(engine: Engine, name: str) -> None:
    with unavailable("finishing the backfill job"), engine.begin() as conn:
        conn.execute(
            sa.update(backfill_jobs)
            .where(backfill_jobs.c.name == name)
            .values(finished_at=sa.func.now(), updated_at=sa.func.now())
        )


def job_status(engine: Engine, name: str) -> dict[str, Any] | None:
    """The checkpoint row of job `name`, or None."""
    with unavailable("reading the backfill job"), engine.connect() as conn:
        row = conn.execute(sa.select(backfill_jobs).where(backfill_jobs.c.name == name)).first()
    return dict(row._mapping) if row is not None else None
