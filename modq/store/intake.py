"""The intake table: listings `submit` accepted, and whether the worker has finished them.

A row is written before its message is published, so an accepted listing survives a broker
that loses messages. The worker closes rows (`close_rows`) inside the transaction that stores
the verdict or the rejection, so a row is open exactly while no outcome is stored. `modq
recover` re-publishes rows open for longer than a grace period (`open_rows`, `touch`).
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


def accept(engine: Engine, rows: Sequence[Accepted]) -> None:
    """Record accepted listings (re-opening a row accepted again) in one transaction."""
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


def open_rows(engine: Engine, older_than_s: float, limit: int = 1000) -> list[Accepted]:
    """Accepted listings still without an outcome, accepted more than `older_than_s` ago."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    query = (
        sa.select(intake.c.listing_id, intake.c.listing_version, intake.c.body, intake.c.source)
        .where(intake.c.done_at.is_(None), intake.c.accepted_at <= cutoff)
        .order_by(intake.c.accepted_at, intake.c.listing_id)
        .limit(limit)
    )
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


def open_count(engine: Engine) -> int:
    """How many accepted listings have no verdict or rejection yet."""
    query = sa.select(sa.func.count()).select_from(intake).where(intake.c.done_at.is_(None))
    with unavailable("counting open intake rows"), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def ping(engine: Engine) -> None:
    """One round trip to the database; raises `StoreUnavailable` when it does not answer."""
    with unavailable("checking the database"), engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
