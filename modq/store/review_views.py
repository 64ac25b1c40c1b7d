"""What the console shows, read in SQL: a job's listing and verdicts, the seller's other
listings, the audit trail, and search over listings with machine and human decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.store.database import as_utc, unavailable
from modq.store.queries import reason_code_condition
from modq.store.schema import listing_decisions, listings, review_jobs, reviews, verdicts

PAGE_SIZE = 50


def _rows(engine: Engine, query: sa.Select[Any], what: str) -> list[dict[str, Any]]:
    with unavailable(what), engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def listing_detail(engine: Engine, listing_id: str) -> dict[str, Any] | None:
    """The listing, its current verdict, its review job and its final decision, or None."""
    v, ld, j = verdicts.c, listing_decisions.c, review_jobs.c
    query = (
        sa.select(
            listings,
            v.id.label("verdict_id"),
            v.decision,
            v.reasons,
            v.suggested,
            v.scores,
            v.photos,
            v.model_version,
            v.policy_version,
            v.created_at.label("verdict_at"),
            j.queue,
            j.claimed_by,
            j.claimed_until,
            j.decided_at.label("job_decided_at"),
            ld.final_decision,
            ld.final_category,
            ld.decided_by,
        )
        .select_from(
            listings.outerjoin(verdicts, listings.c.current_verdict_id == v.id)
            .outerjoin(review_jobs, j.listing_id == listings.c.listing_id)
            .outerjoin(listing_decisions, ld.listing_id == listings.c.listing_id)
        )
        .where(listings.c.listing_id == listing_id)
    )
    found = _rows(engine, query, "reading a listing")
    return found[0] if found else None


def verdict_history(engine: Engine, listing_id: str) -> list[dict[str, Any]]:
    """Every machine verdict of the listing, newest first."""
    v = verdicts.c
    query = (
        sa.select(v.id, v.listing_version, v.model_version, v.policy_version, v.decision,
                  v.reasons, v.source, v.created_at)
        .where(v.listing_id == listing_id)
        .order_by(v.created_at.desc(), v.id.desc())
    )  # fmt: skip
    return _rows(engine, query, "reading verdict history")


def review_history(engine: Engine, listing_id: str) -> list[dict[str, Any]]:
    """Every human decision on the listing (the audit trail), newest first."""
    query = (
        sa.select(reviews)
        .where(reviews.c.listing_id == listing_id)
        .order_by(reviews.c.created_at.desc(), reviews.c.id.desc())
    )
    return _rows(engine, query, "reading review history")


def review_listing_id(engine: Engine, review_id: int) -> str | None:
    """The listing a review row is about (where an undo sends the moderator back to)."""
    query = sa.select(reviews.c.listing_id).where(reviews.c.id == review_id)
    with unavailable("reading a review"), engine.connect() as conn:
        return conn.execute(query).scalar()


def seller_listings(
    engine: Engine, seller_id: str | None, exclude: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The seller's other listings with the machine's and the human decision, newest first."""
    if not seller_id:
        return []
    query = (
        _search_base()
        .where(listings.c.seller_id == seller_id, listings.c.listing_id != exclude)
        .order_by(listings.c.updated_at.desc(), listings.c.listing_id)
        .limit(limit)
    )
    return _rows(engine, query, "reading the seller's listings")


def _search_base() -> sa.Select[Any]:
    v, ld = verdicts.c, listing_decisions.c
    return sa.select(
        listings.c.listing_id,
        listings.c.seller_id,
        listings.c.declared_category,
        listings.c.title,
        listings.c.updated_at,
        listings.c.images,
        v.decision,
        v.reasons,
        v.model_version,
        v.created_at.label("verdict_at"),
        ld.final_decision,
        ld.final_category,
        ld.decided_by,
        ld.decided_at,
    ).select_from(
        listings.outerjoin(verdicts, listings.c.current_verdict_id == v.id).outerjoin(
            listing_decisions, ld.listing_id == listings.c.listing_id
        )
    )


@dataclass
class SearchQuery:
    """Filters of the search page; empty fields do not filter."""

    listing_id: str = ""
    seller_id: str = ""
    category: str = ""
    decision: str = ""  # the machine's current decision
    final: str = ""  # the human final decision; "none" = not decided by a human
    reason: str = ""  # a reason code, e.g. "nudity"
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if self.listing_id:
            conds.append(listings.c.listing_id == self.listing_id)
        if self.seller_id:
            conds.append(listings.c.seller_id == self.seller_id)
        if self.category:
            conds.append(listings.c.declared_category == self.category)
        if self.decision:
            conds.append(verdicts.c.decision == self.decision)
        if self.final == "none":
            conds.append(listing_decisions.c.final_decision.is_(None))
        elif self.final:
            conds.append(listing_decisions.c.final_decision == self.final)
        if self.reason:
            conds.append(reason_code_condition(self.reason))
        if self.since is not None:
            conds.append(listings.c.updated_at >= self.since)
        if self.until is not None:
            conds.append(listings.c.updated_at < self.until)
        return conds


def search(engine: Engine, q: SearchQuery) -> tuple[list[dict[str, Any]], bool]:
    """One page of matching listings, newest first, and whether another page follows."""
    page = max(1, q.page)
    query = (
        _search_base()
        .where(*q.conditions())
        .order_by(listings.c.updated_at.desc(), listings.c.listing_id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    rows = _rows(engine, query, "searching listings")
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


@dataclass(frozen=True)
class QueueFilter:
    """The queue page's filters and sort; empty fields do not filter."""

    reason: str = ""
    category: str = ""
    model_version: str = ""
    older_than_h: float | None = None
    sort: str = "claim"  # "claim" (severity, then age: the claim order), "oldest", "newest"


SORTS = ("claim", "oldest", "newest")


@dataclass(frozen=True)
class QueueRow:
    listing_id: str
    severity: int
    enqueued_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    declared_category: str
    seller_id: str | None
    title: str | None
    model_version: str
    has_photos: bool
    reasons: list[Any]  # the verdict's, as stored (Reason.read them)


def queue_page(
    engine: Engine, queue: str, flt: QueueFilter | None = None, limit: int = PAGE_SIZE
) -> list[QueueRow]:
    """The head of a queue (in claim order unless sorted otherwise), with the listings."""
    flt = flt or QueueFilter()
    j = review_jobs.c
    conds: list[sa.ColumnElement[bool]] = [j.decided_at.is_(None), j.queue == queue]
    if flt.reason:
        # Asked of each job's verdict as the pending index is walked in page order (a
        # correlated subquery): the planner cannot estimate a LIKE over JSON text and would
        # rather scan every verdict; a queue page needs only its first matches.
        matches = (
            sa.select(reason_code_condition(flt.reason))
            .where(verdicts.c.id == j.verdict_id)
            .correlate_except(verdicts)
            .scalar_subquery()
        )
        conds.append(matches.is_(True))
    if flt.category:
        conds.append(listings.c.declared_category == flt.category)
    if flt.model_version:
        conds.append(verdicts.c.model_version == flt.model_version)
    if flt.older_than_h is not None:
        cutoff = datetime.now(UTC) - timedelta(hours=flt.older_than_h)
        conds.append(j.enqueued_at <= cutoff)
    order = {
        "claim": (j.severity.desc(), j.enqueued_at, j.listing_id),
        "oldest": (j.enqueued_at, j.listing_id),
        "newest": (j.enqueued_at.desc(), j.listing_id.desc()),
    }[flt.sort if flt.sort in SORTS else "claim"]
    query = (
        sa.select(
            j.listing_id, j.severity, j.enqueued_at, j.claimed_by, j.claimed_until,
            listings.c.declared_category, listings.c.seller_id, listings.c.title,
            verdicts.c.model_version, listings.c.images, verdicts.c.reasons,
        )
        .join(listings, listings.c.listing_id == j.listing_id)
        .join(verdicts, verdicts.c.id == j.verdict_id)
        .where(*conds)
        .order_by(*order)
        .limit(limit)
    )  # fmt: skip
    with unavailable("reading a queue"), engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        QueueRow(r.listing_id, r.severity, as_utc(r.enqueued_at), r.claimed_by,
                 as_utc(r.claimed_until) if r.claimed_until else None, r.declared_category,
                 r.seller_id, r.title, r.model_version, bool(r.images), list(r.reasons or []))
        for r in rows
    ]  # fmt: skip
