"""What a moderator needs over a shift, in SQL: renewing a lease while they work, their recent
decisions, and undo as an appended review row.

An undo never edits or deletes the row it takes back: it appends a `reviews` row with
`decision = "undo"` and `undoes = <id>`, so the audit shows both. Its effects: the listing's
final decision falls back to the latest settling review not taken back (none: the listing is
undecided again), and the job is pending again, leased to whoever undid it so they can decide
it again at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modq.domain.review import FINAL_DECISIONS, route_reasons
from modq.errors import ReviewError
from modq.store.database import as_utc, unavailable
from modq.store.database import dialect_insert as _insert
from modq.store.schema import UNDO, listing_decisions, review_jobs, reviews, verdicts

# What an undo can take back: the decisions that changed a listing or a job's queue.
UNDOABLE = (*FINAL_DECISIONS, "escalate")


def _now() -> datetime:
    return datetime.now(UTC)


def undone_ids() -> sa.Select[tuple[int]]:
    """The ids of the review rows an undo took back (for `NOT IN`/`NOT EXISTS`)."""
    return sa.select(reviews.c.undoes).where(reviews.c.undoes.is_not(None))


def renew_lease(engine: Engine, listing_id: str, moderator: str, lease_s: float) -> datetime | None:
    """Extend `moderator`'s lease on the pending job (even one that ran out, while nobody else
    claimed it); the new end, or None when the job is not theirs any more."""
    j = review_jobs.c
    until = _now() + timedelta(seconds=lease_s)
    with unavailable("renewing a lease"), engine.begin() as conn:
        row = conn.execute(
            sa.update(review_jobs)
            .where(j.listing_id == listing_id, j.claimed_by == moderator, j.decided_at.is_(None))
            .values(claimed_until=until)
            .returning(j.claimed_until)
        ).first()
    return as_utc(row[0]) if row is not None else None


def claim_job(engine: Engine, listing_id: str, moderator: str, lease_s: float = 600.0) -> bool:
    """Lease one chosen pending job (a claimable row of the queue page, a bulk decision) to
    `moderator` when nobody else holds it; whether they hold it now."""
    j = review_jobs.c
    now = _now()
    free = sa.or_(j.claimed_until.is_(None), j.claimed_until <= now, j.claimed_by == moderator)
    with unavailable("claiming a review job"), engine.begin() as conn:
        row = conn.execute(
            sa.update(review_jobs)
            .where(j.listing_id == listing_id, j.decided_at.is_(None), free)
            .values(claimed_by=moderator, claimed_until=now + timedelta(seconds=lease_s))
            .returning(j.listing_id)
        ).first()
    return row is not None


def job_queue(engine: Engine, listing_id: str) -> str | None:
    """The queue of the listing's pending job, or None."""
    j = review_jobs.c
    query = sa.select(j.queue).where(j.listing_id == listing_id, j.decided_at.is_(None))
    with unavailable("reading a review job"), engine.connect() as conn:
        return conn.execute(query).scalar()


@dataclass(frozen=True)
class RecentDecision:
    id: int
    listing_id: str
    decision: str
    reason_code: str | None
    new_category: str | None
    note: str | None
    created_at: datetime
    undone: bool
    undoable: bool  # within the window, not taken back, and a decision an undo can take back


def recent_decisions(
    engine: Engine, moderator: str, window_s: float, limit: int = 8
) -> list[RecentDecision]:
    """`moderator`'s latest review rows (undos included), newest first."""
    r = reviews.c
    taken = reviews.alias("taken")
    undone = sa.exists().where(taken.c.undoes == r.id)
    query = (
        sa.select(r.id, r.listing_id, r.decision, r.reason_code, r.new_category, r.note,
                  r.created_at, undone.label("undone"))
        .where(r.moderator == moderator)
        .order_by(r.created_at.desc(), r.id.desc())
        .limit(limit)
    )  # fmt: skip
    now = _now()
    with unavailable("reading recent decisions"), engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        RecentDecision(
            int(row.id), row.listing_id, row.decision, row.reason_code, row.new_category,
            row.note, as_utc(row.created_at), bool(row.undone),
            undoable=not row.undone and row.decision in UNDOABLE
            and (now - as_utc(row.created_at)).total_seconds() <= window_s,
        )
        for row in rows
    ]  # fmt: skip


def _restore_final(conn: Connection, listing_id: str) -> None:
    """Make `listing_decisions` the latest settling review not taken back, or nothing."""
    r = reviews.c
    latest = conn.execute(
        sa.select(r.id, r.decision, r.new_category, r.reason_code, r.moderator, r.created_at,
                  verdicts.c.declared_category)
        .join(verdicts, verdicts.c.id == r.verdict_id)
        .where(r.listing_id == listing_id, r.decision.in_(FINAL_DECISIONS),
               r.id.not_in(undone_ids()))
        .order_by(r.created_at.desc(), r.id.desc())
        .limit(1)
    ).first()  # fmt: skip
    ld = listing_decisions
    if latest is None:
        conn.execute(sa.delete(ld).where(ld.c.listing_id == listing_id))
        return
    final = {
        "review_id": latest.id,
        "final_decision": latest.decision,
        "final_category": latest.new_category
        if latest.decision == "recategorise"
        else latest.declared_category,
        "reason_code": latest.reason_code if latest.decision == "reject" else None,
        "decided_by": latest.moderator,
        "decided_at": latest.created_at,
    }
    stmt = _insert(conn, ld).values(listing_id=listing_id, **final)
    conn.execute(stmt.on_conflict_do_update(index_elements=["listing_id"], set_=final))


def undo(
    engine: Engine,
    review_id: int,
    actor: str,
    *,
    is_lead: bool,
    window_s: float,
    lease_s: float = 600.0,
) -> int:
    """Take back review `review_id`; returns the id of the undo row.

    Refused (ReviewError) unless `actor` made the decision or is a lead, it is at most
    `window_s` old, it is the listing's latest decision (skips aside) and not taken back
    already, and the listing has no newer verdict since.
    """
    r, j = reviews.c, review_jobs.c
    now = _now()
    with unavailable("undoing a decision"), engine.begin() as conn:
        target = conn.execute(sa.select(reviews).where(r.id == review_id)).first()
        if target is None:
            raise ReviewError("no such decision")
        if target.moderator != actor and not is_lead:
            raise ReviewError("only the moderator who decided, or a lead, may undo a decision")
        job = conn.execute(
            sa.select(j.verdict_id, j.queue, j.claimed_by, j.claimed_until)
            .where(j.listing_id == target.listing_id)
            .with_for_update()
        ).first()
        if target.decision not in UNDOABLE:
            raise ReviewError(f"a {target.decision} cannot be undone")
        if (now - as_utc(target.created_at)).total_seconds() > window_s:
            raise ReviewError("too late to undo: the window has passed (ask a lead)")
        later = conn.execute(
            sa.select(r.id)
            .where(r.listing_id == target.listing_id, r.id != target.id, r.decision != "skip",
                   r.created_at >= target.created_at)
            .limit(1)
        ).first()  # fmt: skip
        if later is not None:
            raise ReviewError("that is no longer the listing's latest decision")
        if job is None or job.verdict_id != target.verdict_id:
            raise ReviewError("the listing has a newer verdict since that decision")
        if (
            job.claimed_by not in (None, actor)
            and job.claimed_until is not None
            and as_utc(job.claimed_until) > now
        ):
            raise ReviewError(f"{job.claimed_by} is reviewing the listing now")
        undo_id = conn.execute(
            sa.insert(reviews)
            .values(listing_id=target.listing_id, verdict_id=target.verdict_id, moderator=actor,
                    decision=UNDO, undoes=target.id, model_version=target.model_version,
                    policy_version=target.policy_version, created_at=now)
            .returning(r.id)
        ).scalar_one()  # fmt: skip
        values: dict[str, object] = {
            "decided_at": None,
            "claimed_by": actor,
            "claimed_until": now + timedelta(seconds=lease_s),
        }
        if target.decision == "escalate":
            reasons = conn.execute(
                sa.select(verdicts.c.reasons).where(verdicts.c.id == target.verdict_id)
            ).scalar_one()
            values["queue"] = route_reasons(list(reasons or []))[0]
        else:
            _restore_final(conn, target.listing_id)
        conn.execute(sa.update(review_jobs).where(j.listing_id == target.listing_id).values(values))
        return int(undo_id)
