"""The moderators' queries: current verdicts (or every row), filtered, newest first, and the
rejected events. Only plain values and dicts leave this module."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.verdicts import DECISIONS
from modq.errors import UsageError
from modq.store.database import as_utc, unavailable
from modq.store.schema import listing_decisions, listings, rejected_events, verdicts


def _filtered(
    select: sa.Select[Any],
    *,
    decision: str | None,
    category: str | None,
    since: datetime | None,
    listing: str | None,
    current_only: bool,
) -> sa.Select[Any]:
    if decision is not None and decision not in DECISIONS:
        raise UsageError(f"unknown decision {decision!r}: one of {', '.join(DECISIONS)}")
    if current_only:
        on = listings.c.current_verdict_id == verdicts.c.id
    else:
        on = listings.c.listing_id == verdicts.c.listing_id
    select = select.select_from(verdicts.join(listings, on))
    if decision is not None:
        select = select.where(verdicts.c.decision == decision)
    if category is not None:
        select = select.where(verdicts.c.declared_category == category)
    if since is not None:
        select = select.where(verdicts.c.created_at >= as_utc(since))
    if listing is not None:
        select = select.where(verdicts.c.listing_id == listing)
    return select


def _verdict_dict(row: sa.Row[Any]) -> dict[str, Any]:
    out = dict(row._mapping)
    out["suggested"] = [tuple(pair) for pair in out["suggested"]]
    out["created_at"] = as_utc(out["created_at"])
    out["current"] = bool(out["current"])
    return out


def query_verdicts(
    engine: Engine,
    *,
    decision: str | None = None,
    category: str | None = None,
    since: datetime | None = None,
    listing: str | None = None,
    limit: int = 100,
    current_only: bool = True,
) -> list[dict[str, Any]]:
    """Verdicts newest first: each listing's current one, or every row (`current_only=False`).

    `limit=0` returns all matches.
    """
    columns = [c for c in verdicts.c]
    current = (listings.c.current_verdict_id == verdicts.c.id).label("current")
    # The human decision (review console) beside the machine's, when there is one.
    human = sa.select(listing_decisions.c.final_decision).where(
        listing_decisions.c.listing_id == verdicts.c.listing_id
    )
    human_category = sa.select(listing_decisions.c.final_category).where(
        listing_decisions.c.listing_id == verdicts.c.listing_id
    )
    select = _filtered(
        sa.select(
            *columns,
            listings.c.title,
            current,
            human.scalar_subquery().label("human_decision"),
            human_category.scalar_subquery().label("human_category"),
        ),
        decision=decision,
        category=category,
        since=since,
        listing=listing,
        current_only=current_only,
    ).order_by(verdicts.c.created_at.desc(), verdicts.c.id.desc())
    if limit > 0:
        select = select.limit(limit)
    with unavailable("querying verdicts"), engine.connect() as conn:
        return [_verdict_dict(row) for row in conn.execute(select)]


def count_verdicts(
    engine: Engine,
    *,
    decision: str | None = None,
    category: str | None = None,
    since: datetime | None = None,
    listing: str | None = None,
    current_only: bool = True,
) -> int:
    """How many verdicts `query_verdicts(..., limit=0)` would return."""
    select = _filtered(
        sa.select(sa.func.count()),
        decision=decision,
        category=category,
        since=since,
        listing=listing,
        current_only=current_only,
    )
    with unavailable("counting verdicts"), engine.connect() as conn:
        return int(conn.execute(select).scalar_one())


def list_rejected(engine: Engine, *, limit: int = 100) -> list[dict[str, Any]]:
    """Rejected events newest first (`limit=0`: all)."""
    select = sa.select(rejected_events).order_by(
        rejected_events.c.received_at.desc(), rejected_events.c.id.desc()
    )
    if limit > 0:
        select = select.limit(limit)
    with unavailable("listing rejected events"), engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(select)]
    for row in rows:
        row["received_at"] = as_utc(row["received_at"])
    return rows


def reason_code_condition(code: str) -> sa.ColumnElement[bool]:
    """Verdicts with a reason of `code`, whether stored as a legacy string ("code: ...") or a
    structured object ({"code": ...}).

    Minimal version for the console's queue filter (issue 26); issue 24's index-served one
    replaces it at merge, with the same name and signature.
    """
    safe = code.replace("\\", "").replace("%", "").replace("_", "\\_").replace('"', "")
    text = sa.cast(verdicts.c.reasons, sa.Text)
    return sa.or_(
        text.like(f'%"{safe}:%', escape="\\"),
        text.like(f'%"code": "{safe}"%', escape="\\"),
    )
