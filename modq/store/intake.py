"""The intake table: listings `submit` accepted, and whether the worker has finished them.

A row is written before its message is published, so an accepted listing survives a broker
that loses messages. The worker closes rows (`close_rows`) inside the transaction that stores
the verdict or the rejection, so a row is open exactly while no outcome is stored. `modq
recover` re-publishes rows open for longer than a grace period (`open_rows`, `touch`), and
deletes rows closed for longer than `intake_keep_days` (`prune`), a bounded chunk a pass.
`modq backfill` records what it queues here too (`accept(..., keep_open=True)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modq.domain.verdicts import Source
from modq.store.database import clean_text, make_engine, unavailable
from modq.store.database import dialect_insert as _insert
from modq.store.schema import intake

_CHUNK = 1000


@dataclass(frozen=True)
class Accepted:
    """One accepted listing: its key, the message body as published, and its queue's source."""

    listing_id: str
    listing_version: int
    body: dict[str, Any]
    source: Source = "new"


@lru_cache(maxsize=8)
def shared_engine(url: str) -> Engine:
    """One engine (pool) per database for producers that call `submit` many times."""
    return make_engine(url)


def accept(engine: Engine, rows: Sequence[Accepted], *, keep_open: bool = False) -> None:
    """Record accepted listings (re-opening a row accepted again) in one transaction.

    `keep_open` (backfill): a row that is still open is left as it is, so a new listing on
    its way keeps its source (and `modq recover` sends it to the new queue); only a closed or
    missing row is (re)opened with these values."""
    if not rows:
        return
    # One row per key: ON CONFLICT cannot touch a row twice in a statement.
    unique = {(r.listing_id, r.listing_version): r for r in rows}
    values = [
        {
            "listing_id": clean_text(r.listing_id),
            "listing_version": r.listing_version,
            "body": r.body,
            "source": r.source,
            "done_at": None,
        }
        for _, r in sorted(unique.items())
    ]
    with unavailable(f"accepting {len(values)} listings"), engine.begin() as conn:
        ins = _insert(conn, intake)
        upsert = ins.on_conflict_do_update(
            index_elements=[intake.c.listing_id, intake.c.listing_version],
            set_={
                "body": ins.excluded.body,
                "source": ins.excluded.source,
                "accepted_at": sa.func.now(),
                "done_at": None,
            },
            where=intake.c.done_at.is_not(None) if keep_open else None,
        )
        for start in range(0, len(values), _CHUNK):
            conn.execute(upsert, values[start : start + _CHUNK])


def close_rows(conn: Connection, keys: Sequence[tuple[str | None, int | None]]) -> None:
    """Mark done, in the caller's transaction, every open row of each listing up to the
    version given (an older version a newer verdict superseded is finished too). A key
    without a version closes the listing's version 1, the default of an event without one."""
    newest: dict[str, int] = {}
    for listing_id, version in keys:
        if listing_id is not None:
            lid = clean_text(listing_id) or ""
            newest[lid] = max(newest.get(lid, 0), version or 1)
    if not newest:
        return
    stmt = (
        sa.update(intake)
        .where(
            intake.c.listing_id == sa.bindparam("lid"),
            intake.c.listing_version <= sa.bindparam("ver"),
            intake.c.done_at.is_(None),
        )
        .values(done_at=sa.func.now())
    )
    # Sorted, so concurrent batches take row locks in the same order and cannot deadlock.
    conn.execute(stmt, [{"lid": lid, "ver": ver} for lid, ver in sorted(newest.items())])


def open_rows(
    engine: Engine,
    older_than_s: float,
    limit: int = 1000,
    source: Source | None = None,
    before: float | None = None,
) -> list[Accepted]:
    """Accepted listings still without an outcome, accepted more than `older_than_s` ago
    (and before `before`, a Unix time, when given; of one `source` only, when given)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    if before is not None:
        cutoff = min(cutoff, datetime.fromtimestamp(before, UTC))
    query = (
        sa.select(intake.c.listing_id, intake.c.listing_version, intake.c.body, intake.c.source)
        .where(intake.c.done_at.is_(None), intake.c.accepted_at <= cutoff)
        .order_by(intake.c.accepted_at, intake.c.listing_id)
        .limit(limit)
    )
    if source is not None:
        query = query.where(intake.c.source == source)
    with unavailable("reading open intake rows"), engine.connect() as conn:
        return [
            Accepted(r.listing_id, r.listing_version, dict(r.body), r.source)
            for r in conn.execute(query)
        ]


def touch(engine: Engine, rows: Sequence[Accepted]) -> None:
    """Restart the grace period of re-published rows, so a recovery does not repeat at once."""
    if not rows:
        return
    stmt = (
        sa.update(intake)
        .where(
            intake.c.listing_id == sa.bindparam("lid"),
            intake.c.listing_version == sa.bindparam("ver"),
        )
        .values(accepted_at=sa.func.now())
    )
    with unavailable(f"re-opening {len(rows)} intake rows"), engine.begin() as conn:
        conn.execute(stmt, [{"lid": r.listing_id, "ver": r.listing_version} for r in rows])


def prune(engine: Engine, keep_s: float, limit: int = 10_000) -> int:
    """Delete at most `limit` rows closed more than `keep_s` ago, oldest first; how many.

    Bounded so one pass is one short transaction whatever the backlog (a first run after
    months): the recovery loop calls it every pass, so it catches up chunk by chunk. The
    `(done_at, accepted_at)` index serves the scan. An open row is never deleted.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=keep_s)
    oldest = (
        sa.select(intake.c.listing_id, intake.c.listing_version)
        .where(intake.c.done_at.is_not(None), intake.c.done_at < cutoff)
        .order_by(intake.c.done_at)
        .limit(limit)
    )
    key = sa.tuple_(intake.c.listing_id, intake.c.listing_version)
    stmt = sa.delete(intake).where(key.in_(oldest))
    with unavailable("pruning closed intake rows"), engine.begin() as conn:
        return int(conn.execute(stmt).rowcount or 0)


def row_counts(engine: Engine) -> tuple[int, int]:
    """(all intake rows, open rows): the table's size, for reports."""
    query = sa.select(
        sa.func.count(), sa.func.count().filter(intake.c.done_at.is_(None))
    ).select_from(intake)
    with unavailable("counting intake rows"), engine.connect() as conn:
        total, still_open = conn.execute(query).one()
    return int(total), int(still_open)


def open_count(engine: Engine) -> int:
    """How many accepted listings have no verdict or rejection yet."""
    query = sa.select(sa.func.count()).select_from(intake).where(intake.c.done_at.is_(None))
    with unavailable("counting open intake rows"), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def ping(engine: Engine) -> None:
    """One round trip to the database; raises `StoreUnavailable` when it does not answer."""
    with unavailable("checking the database"), engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
