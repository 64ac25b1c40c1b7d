"""The queries `modq backfill` selects with: stored listings with their current verdict, in
primary-key pages (keyset pagination: `listing_id > cursor … LIMIT n`, never OFFSET, so a table
of millions streams in constant memory and every page costs the same), and the current verdict
keys of listings named in an export file.

Rows leave this module as plain dicts; `modq.backfill.selection` turns them into events.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.store.database import as_utc, unavailable
from modq.store.schema import listings, verdicts


@dataclass(frozen=True)
class ListingFilter:
    """Which stored listings a backfill selects; conditions combine with AND."""

    category: str | None = None
    since: datetime | None = None  # on the listing's created_at, UTC
    until: datetime | None = None  # exclusive
    decision: str | None = None  # of the current verdict
    # Only listings whose current verdict is missing, older than the listing, or made by
    # another model or policy version than these.
    stale_against: tuple[str, str] | None = None


StoredListing = dict[str, Any]
VerdictKey = tuple[int, str, str]  # listing version, model version, policy version

_PAGE_COLUMNS = (
    listings.c.listing_id,
    listings.c.listing_version,
    listings.c.declared_category,
    listings.c.seller_id,
    listings.c.title,
    listings.c.images,
    listings.c.created_at,
    verdicts.c.listing_version.label("verdict_listing_version"),
    verdicts.c.model_version,
    verdicts.c.policy_version,
)


def _current_verdict() -> sa.FromClause:
    return listings.outerjoin(verdicts, verdicts.c.id == listings.c.current_verdict_id)


def _where(f: ListingFilter) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if f.category is not None:
        conds.append(listings.c.declared_category == f.category)
    if f.since is not None:
        conds.append(listings.c.created_at >= as_utc(f.since))
    if f.until is not None:
        conds.append(listings.c.created_at < as_utc(f.until))
    if f.decision is not None:
        conds.append(verdicts.c.decision == f.decision)
    if f.stale_against is not None:
        model_version, policy_version = f.stale_against
        conds.append(
            sa.or_(
                verdicts.c.id.is_(None),
                verdicts.c.model_version != model_version,
                verdicts.c.policy_version != policy_version,
                verdicts.c.listing_version < listings.c.listing_version,
            )
        )
    return conds


def _selected(f: ListingFilter) -> sa.Select[Any]:
    query = sa.select(*_PAGE_COLUMNS).select_from(_current_verdict()).where(*_where(f))
    return query.order_by(listings.c.listing_id)


def _row(row: sa.Row[Any]) -> StoredListing:
    out = dict(row._mapping)
    out["created_at"] = as_utc(out["created_at"])
    return out


def listing_pages(
    engine: Engine, f: ListingFilter, cursor: str | None, page_size: int
) -> Iterator[list[StoredListing]]:
    """The selected listings after `cursor`, `page_size` at a time, in listing_id order."""
    base = _selected(f)
    while True:
        query = base if cursor is None else base.where(listings.c.listing_id > cursor)
        with unavailable("reading the backfill selection"), engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(query.limit(page_size))]
        if not rows:
            return
        cursor = rows[-1]["listing_id"]
        yield rows


def count_listings(engine: Engine, f: ListingFilter, cursor: str | None) -> int:
    query = sa.select(sa.func.count()).select_from(_current_verdict()).where(*_where(f))
    if cursor is not None:
        query = query.where(listings.c.listing_id > cursor)
    with unavailable("counting the backfill selection"), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def listings_by_id(
    engine: Engine, f: ListingFilter, ids: Sequence[str]
) -> tuple[list[StoredListing], set[str]]:
    """The selected listings among `ids`, and which of `ids` exist at all."""
    with unavailable("reading the backfill selection"), engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(_selected(f).where(listings.c.listing_id.in_(ids)))]
        known = set(
            conn.execute(
                sa.select(listings.c.listing_id).where(listings.c.listing_id.in_(ids))
            ).scalars()
        )
    return rows, known


def current_verdict_keys(engine: Engine, listing_ids: Collection[str]) -> dict[str, VerdictKey]:
    """For each listing that has a current verdict: its listing, model and policy versions."""
    if not listing_ids:
        return {}
    query = (
        sa.select(
            verdicts.c.listing_id,
            verdicts.c.listing_version,
            verdicts.c.model_version,
            verdicts.c.policy_version,
        )
        .select_from(listings.join(verdicts, verdicts.c.id == listings.c.current_verdict_id))
        .where(listings.c.listing_id.in_(set(listing_ids)))
    )
    with unavailable("reading current verdicts"), engine.connect() as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(query)}
