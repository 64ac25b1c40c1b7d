"""Storage: idempotent batch writes of verdicts and the moderators' queries.

Every write is an upsert keyed on what makes a message unique, so a message delivered twice
never makes a second row. Each listing points at its *current* verdict: the one for the highest
listing version, and among those the most recently created row (a re-moderation with a new
model or policy version). Older verdicts stay for audit. Only plain values and dicts leave this
module; database errors that may pass are raised as `StoreUnavailable`. Engines and migrations
live in `modq.store.database` and are re-exported here, the module the pipeline and CLI import.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modq.domain.events import ListingEvent, latest_versions
from modq.domain.verdicts import RejectedEvent, Verdict
from modq.store.database import as_utc, clean_text, unavailable
from modq.store.database import dialect_insert as _insert
from modq.store.intake import close_rows
from modq.store.reviews import file_review_jobs
from modq.store.schema import listings, rejected_events, verdicts

# Rows are passed to execute() as a list: SQLAlchemy's "insertmanyvalues" sends each chunk as
# ONE multi-row INSERT ... ON CONFLICT ... RETURNING, compiled once and cached (a .values(list)
# statement is recompiled per batch). The chunk bounds the bound parameters of one statement.
_CHUNK = 1000
_VERDICT_KEY = ("listing_id", "listing_version", "model_version", "policy_version")
_VERDICT_DATA = (
    "declared_category", "decision", "reasons", "suggested", "best_photo", "scores", "photos",
    "timings", "source",
)  # fmt: skip
_LISTING_DATA = (
    "listing_version", "declared_category", "seller_id", "title", "images", "created_at",
)  # fmt: skip

VerdictKey = tuple[str, int, str, str]


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


# --- writes ------------------------------------------------------------------------------------


def _listing_row(event: ListingEvent) -> dict[str, Any]:
    return {
        "listing_id": clean_text(event.listing_id),
        "listing_version": event.listing_version,
        "declared_category": clean_text(event.declared_category),
        "seller_id": clean_text(event.seller_id),
        "title": clean_text(event.title),
        "images": list(event.images),
        "created_at": as_utc(event.created_at),
    }


def _stub_row(verdict: Verdict, now: datetime) -> dict[str, Any]:
    """A listing row reconstructed from a verdict whose event was not passed in."""
    photos = sorted(verdict.photos, key=lambda p: p.index)
    return {
        "listing_id": clean_text(verdict.listing_id),
        "listing_version": verdict.listing_version,
        "declared_category": clean_text(verdict.declared_category),
        "seller_id": None,
        "title": None,
        "images": [p.ref for p in photos],
        "created_at": now,
    }


def _verdict_row(verdict: Verdict) -> dict[str, Any]:
    row = verdict.model_dump(mode="json", include={*_VERDICT_KEY, *_VERDICT_DATA})
    for name in ("listing_id", "model_version", "policy_version", "declared_category"):
        row[name] = clean_text(row[name])
    # Objects without their unset fields: what `reason_code_condition` matches on.
    row["reasons"] = [reason.stored() for reason in verdict.reasons]
    return row


def _key(verdict: Verdict) -> VerdictKey:
    return (
        clean_text(verdict.listing_id) or "",
        verdict.listing_version,
        clean_text(verdict.model_version) or "",
        clean_text(verdict.policy_version) or "",
    )


def _upsert_listings(
    conn: Connection, events: Sequence[ListingEvent], batch: Sequence[Verdict]
) -> None:
    newest = {event.listing_id: event for event in latest_versions(events)}
    rows = {lid: _listing_row(event) for lid, event in newest.items()}
    now = datetime.now(UTC)
    for verdict in batch:  # a verdict whose event was not passed in still needs its listing
        if verdict.listing_id not in rows:
            rows[verdict.listing_id] = _stub_row(verdict, now)
    # Step 1, in one pass sorted by listing_id: insert the missing rows and lock the existing
    # ones ("update nothing" still takes the row lock). Every batch takes its locks in the same
    # order, so concurrent batches serialise per listing and cannot deadlock.
    inserted: set[str] = set()
    ins = _insert(conn, listings)
    lock = ins.on_conflict_do_update(
        index_elements=[listings.c.listing_id],
        set_={"listing_id": ins.excluded.listing_id},
        where=sa.false(),
    ).returning(listings.c.listing_id)
    for chunk in _chunks([rows[lid] for lid in sorted(rows)]):
        inserted.update(conn.execute(lock, chunk).scalars())
    # Step 2: rows that existed take the event's data unless they already hold a newer version.
    stale = [rows[lid] for lid in sorted(newest) if rows[lid]["listing_id"] not in inserted]
    update = ins.on_conflict_do_update(
        index_elements=[listings.c.listing_id],
        set_={**{c: ins.excluded[c] for c in _LISTING_DATA}, "updated_at": sa.func.now()},
        where=listings.c.listing_version <= ins.excluded.listing_version,
    ).returning(listings.c.listing_id)  # RETURNING makes it one multi-row statement too
    for chunk in _chunks(stale):
        conn.execute(update, chunk)


def _upsert_verdicts(conn: Connection, batch: Sequence[Verdict]) -> dict[VerdictKey, int]:
    # ON CONFLICT cannot touch one row twice in a statement: a redelivery inside the batch
    # is collapsed first, the last copy winning.
    unique = {_key(v): v for v in batch}
    rows = [_verdict_row(unique[key]) for key in sorted(unique)]
    ids: dict[VerdictKey, int] = {}
    key_cols = [verdicts.c[name] for name in _VERDICT_KEY]
    ins = _insert(conn, verdicts)
    upsert = ins.on_conflict_do_update(
        index_elements=key_cols, set_={c: ins.excluded[c] for c in _VERDICT_DATA}
    ).returning(verdicts.c.id, *key_cols)
    for chunk in _chunks(rows):
        for row in conn.execute(upsert, chunk):
            ids[(row.listing_id, row.listing_version, row.model_version, row.policy_version)] = (
                row.id
            )
    return ids


def _promote_current(conn: Connection, listing_ids: set[str]) -> None:
    """Point each listing at its best verdict: highest listing version, then newest row.

    A redelivered older version (or an older model's verdict, whose row keeps its old id)
    therefore never takes over from a newer one.
    """
    best = (
        sa.select(verdicts.c.id)
        .where(verdicts.c.listing_id == listings.c.listing_id)
        .order_by(verdicts.c.listing_version.desc(), verdicts.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    ordered = sorted(listing_ids)
    for start in range(0, len(ordered), _CHUNK):
        conn.execute(
            sa.update(listings)
            .where(
                listings.c.listing_id.in_(ordered[start : start + _CHUNK]),
                listings.c.current_verdict_id.is_distinct_from(best),
            )
            .values(current_verdict_id=best, updated_at=sa.func.now())
        )


def insert_rejected(conn: Connection, rejected: Sequence[RejectedEvent]) -> None:
    """Add rejected events inside the caller's transaction (the one place that writes them)."""
    rows = [
        {
            "stage": r.stage,
            "reason": clean_text(r.reason),
            "payload": clean_text(r.payload),
            "listing_id": clean_text(r.listing_id),
        }
        for r in rejected
    ]
    for chunk in _chunks(rows):
        conn.execute(sa.insert(rejected_events).returning(rejected_events.c.id), chunk)


def save_batch(
    engine: Engine,
    events: Sequence[ListingEvent],
    verdicts: Sequence[Verdict],
    rejected: Sequence[RejectedEvent] = (),
) -> list[int]:
    """Store a batch in one transaction; return the verdict ids in input order.

    Saving the same batch again changes nothing and returns the same ids. The intake rows of
    every listing with a verdict or a rejection here are closed in the same transaction.
    """
    if not (events or verdicts or rejected):
        return []
    with unavailable(f"saving {len(verdicts)} verdicts"), engine.begin() as conn:
        _upsert_listings(conn, events, verdicts)
        ids = _upsert_verdicts(conn, verdicts)
        insert_rejected(conn, rejected)
        _promote_current(conn, {_key(v)[0] for v in verdicts})
        file_review_jobs(conn, {_key(v)[0] for v in verdicts})  # the console's review queue
        close_rows(conn, _outcome_keys(events, verdicts, rejected))
    return [ids[_key(v)] for v in verdicts]


def _outcome_keys(
    events: Sequence[ListingEvent], verdicts: Sequence[Verdict], rejected: Sequence[RejectedEvent]
) -> list[tuple[str | None, int | None]]:
    keys: list[tuple[str | None, int | None]] = [(e.listing_id, e.listing_version) for e in events]
    keys += [(v.listing_id, v.listing_version) for v in verdicts]
    # A line refused by `submit` was never accepted: it closes nothing.
    keys += [(r.listing_id, r.listing_version) for r in rejected if r.stage == "worker"]
    return keys


def record_rejected(engine: Engine, rejected: Sequence[RejectedEvent]) -> None:
    """Keep events that could not be moderated, with their raw payload and the reason, and
    close their intake rows in the same transaction."""
    if not rejected:
        return
    with unavailable(f"recording {len(rejected)} rejected events"), engine.begin() as conn:
        insert_rejected(conn, rejected)
        close_rows(conn, _outcome_keys((), (), rejected))


class SqlVerdictStore:
    """`VerdictStore` on a SQLAlchemy engine: what the worker's pipeline writes through."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save_batch(
        self,
        events: Sequence[ListingEvent],
        verdicts: Sequence[Verdict],
        rejected: Sequence[RejectedEvent] = (),
    ) -> list[int]:
        return save_batch(self.engine, events, verdicts, rejected)

    def record_rejected(self, rejected: Sequence[RejectedEvent]) -> None:
        record_rejected(self.engine, rejected)
