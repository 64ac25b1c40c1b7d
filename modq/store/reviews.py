"""The review queue in SQL: filing review verdicts as jobs, leased claims, decisions.

A `review` verdict becomes one `review_jobs` row per listing (filed in the transaction that
saves the verdict). A moderator claims the most severe, oldest pending job of a queue with
`FOR UPDATE SKIP LOCKED`, so concurrent claimers never get the same row and never wait on
each other; the claim is a lease (`claimed_until`) that returns the job to the queue when it
runs out. A decision appends a `reviews` row and, for approve/reject/recategorise, sets the
listing's final decision, in one transaction, and only while the caller holds the lease.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modq.domain.review import FINAL_DECISIONS, HUMAN_DECISIONS, QUEUES, route_reasons
from modq.errors import ReviewError
from modq.store.database import as_utc, unavailable
from modq.store.database import dialect_insert as _insert
from modq.store.schema import listing_decisions, listings, review_jobs, reviews, verdicts

_CHUNK = 1000
MAX_NOTE = 1000


def file_review_jobs(conn: Connection, listing_ids: Iterable[str]) -> None:
    """Make each listing's job match its current verdict, inside the caller's transaction.

    A current `review` verdict opens (or re-opens, for a newer verdict) a pending job routed
    by its reasons; any other current verdict withdraws a job still pending.
    """
    ordered = sorted(set(listing_ids))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        rows = conn.execute(
            sa.select(
                listings.c.listing_id,
                verdicts.c.id,
                verdicts.c.decision,
                verdicts.c.reasons,
                verdicts.c.created_at,
            )
            .join(verdicts, listings.c.current_verdict_id == verdicts.c.id)
            .where(listings.c.listing_id.in_(chunk))
        ).all()
        jobs, settled = [], []
        for listing_id, verdict_id, decision, reasons, created_at in rows:
            if decision != "review":
                settled.append(listing_id)
                continue
            queue, severity = route_reasons(list(reasons or []))
            jobs.append(
                {
                    "listing_id": listing_id,
                    "verdict_id": verdict_id,
                    "queue": queue,
                    "severity": severity,
                    "enqueued_at": created_at,
                }
            )
        if jobs:
            stmt = _insert(conn, review_jobs)
            fresh = ("verdict_id", "queue", "severity", "enqueued_at")
            stmt = stmt.on_conflict_do_update(
                index_elements=["listing_id"],
                set_={
                    **{c: stmt.excluded[c] for c in fresh},
                    "claimed_by": None,
                    "claimed_until": None,
                    "decided_at": None,
                },
                where=review_jobs.c.verdict_id != stmt.excluded.verdict_id,
            )
            conn.execute(stmt, jobs)
        if settled:
            conn.execute(
                sa.delete(review_jobs).where(
                    review_jobs.c.listing_id.in_(settled), review_jobs.c.decided_at.is_(None)
                )
            )


def sync_review_jobs(engine: Engine) -> None:
    """File every listing whose current verdict is `review` (databases older than 0005)."""
    query = (
        sa.select(listings.c.listing_id)
        .join(verdicts, listings.c.current_verdict_id == verdicts.c.id)
        .where(verdicts.c.decision == "review")
    )
    with unavailable("filing review jobs"), engine.begin() as conn:
        file_review_jobs(conn, [row[0] for row in conn.execute(query)])


@dataclass(frozen=True)
class Claim:
    listing_id: str
    verdict_id: int
    queue: str
    claimed_until: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def claim_next(engine: Engine, moderator: str, queue: str, lease_s: float = 600.0) -> Claim | None:
    """Lease the next job of `queue` to `moderator` (their own unexpired claim first); None
    when the queue has nothing left for them. Jobs they skipped are not offered again."""
    if queue not in QUEUES:
        raise ReviewError(f"no queue named {queue!r}")
    j = review_jobs.c
    now = _now()
    until = now + timedelta(seconds=lease_s)
    mine = sa.and_(j.claimed_by == moderator, j.claimed_until > now)
    skipped = sa.exists().where(
        reviews.c.listing_id == j.listing_id,
        reviews.c.verdict_id == j.verdict_id,
        reviews.c.moderator == moderator,
        reviews.c.decision == "skip",
    )
    free = sa.or_(j.claimed_until.is_(None), j.claimed_until <= now)
    base = sa.select(j.listing_id).where(j.decided_at.is_(None), j.queue == queue)
    returning = (j.listing_id, j.verdict_id, j.queue, j.claimed_until)
    with unavailable("claiming a review job"), engine.begin() as conn:
        own = base.where(mine).limit(1).with_for_update(skip_locked=True)
        pick = (
            base.where(free, ~skipped)
            .order_by(j.severity.desc(), j.enqueued_at, j.listing_id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        for candidate, guard in ((own, mine), (pick, free)):
            row = conn.execute(
                sa.update(review_jobs)
                .where(j.listing_id == candidate.scalar_subquery(), j.decided_at.is_(None), guard)
                .values(claimed_by=moderator, claimed_until=until)
                .returning(*returning)
            ).first()
            if row is not None:
                return Claim(row[0], int(row[1]), row[2], as_utc(row[3]))
    return None


def release(engine: Engine, moderator: str) -> int:
    """Give back every unexpired claim of `moderator` (logout); returns how many."""
    j = review_jobs.c
    with unavailable("releasing claims"), engine.begin() as conn:
        result = conn.execute(
            sa.update(review_jobs)
            .where(j.claimed_by == moderator, j.decided_at.is_(None), j.claimed_until > _now())
            .values(claimed_until=None, claimed_by=None)
        )
        return int(result.rowcount)


def move_job(engine: Engine, listing_id: str, queue: str) -> bool:
    """A lead's queue edit: put a pending job in `queue` and end any lease on it."""
    if queue not in QUEUES:
        raise ReviewError(f"no queue named {queue!r}")
    j = review_jobs.c
    with unavailable("moving a review job"), engine.begin() as conn:
        result = conn.execute(
            sa.update(review_jobs)
            .where(j.listing_id == listing_id, j.decided_at.is_(None))
            .values(queue=queue, claimed_by=None, claimed_until=None)
        )
        return bool(result.rowcount)


def decide(
    engine: Engine,
    listing_id: str,
    moderator: str,
    decision: str,
    *,
    reason_code: str | None = None,
    new_category: str | None = None,
    note: str | None = None,
    not_showing: Sequence[int] = (),
) -> int:
    """Record `moderator`'s decision on the job they hold; returns the `reviews` row id.

    The lease is theirs while nobody else has claimed the job: a decision after it ran out is
    accepted when the job is still theirs (they were slow, nobody took it), refused with
    ReviewError naming who when someone else claimed it, or when it is no longer pending.
    `not_showing`: photo indexes the moderator marked as not showing the reason (exported as
    negatives); `note`: free text kept in the audit and the export.
    """
    if decision not in HUMAN_DECISIONS:
        raise ReviewError(f"unknown decision {decision!r}")
    if decision == "recategorise" and not new_category:
        raise ReviewError("re-categorise needs the new category")
    if decision in ("reject", "escalate") and not reason_code:
        raise ReviewError(f"{decision} needs a reason code")
    if note is not None and len(note) > MAX_NOTE:
        raise ReviewError(f"a note has at most {MAX_NOTE} characters")
    marked = sorted({int(i) for i in not_showing})
    j = review_jobs.c
    now = _now()
    with unavailable("recording a decision"), engine.begin() as conn:
        job = conn.execute(
            sa.select(j.verdict_id, j.queue, j.claimed_by, j.claimed_until, j.decided_at)
            .where(j.listing_id == listing_id)
            .with_for_update()
        ).first()
        if job is None or job.decided_at is not None:
            raise ReviewError(f"listing {listing_id} has no pending review (decided already?)")
        if job.claimed_by is None:
            raise ReviewError(f"listing {listing_id} was released or moved: claim it again")
        if job.claimed_by != moderator:
            raise ReviewError(f"listing {listing_id} is claimed by {job.claimed_by}, not you")
        if decision == "escalate" and job.queue == "escalated":
            raise ReviewError(f"listing {listing_id} is escalated already: decide it")
        verdict = conn.execute(
            sa.select(verdicts.c.model_version, verdicts.c.policy_version,
                      verdicts.c.declared_category)
            .where(verdicts.c.id == job.verdict_id)
        ).one()  # fmt: skip
        review_id = conn.execute(
            sa.insert(reviews)
            .values(
                listing_id=listing_id,
                verdict_id=job.verdict_id,
                moderator=moderator,
                decision=decision,
                reason_code=reason_code if decision in ("reject", "escalate") else None,
                new_category=new_category if decision == "recategorise" else None,
                note=(note or "").strip() or None,
                not_showing=marked or None,
                model_version=verdict.model_version,
                policy_version=verdict.policy_version,
                created_at=now,
            )
            .returning(reviews.c.id)
        ).scalar_one()
        upd = sa.update(review_jobs).where(j.listing_id == listing_id)
        if decision in FINAL_DECISIONS:
            final = {
                "review_id": review_id,
                "final_decision": decision,
                "final_category": new_category if decision == "recategorise"
                else verdict.declared_category,
                "reason_code": reason_code if decision == "reject" else None,
                "decided_by": moderator,
                "decided_at": now,
            }  # fmt: skip
            stmt = _insert(conn, listing_decisions).values(listing_id=listing_id, **final)
            conn.execute(stmt.on_conflict_do_update(index_elements=["listing_id"], set_=final))
            conn.execute(upd.values(decided_at=now, claimed_until=None))
        elif decision == "escalate":
            conn.execute(upd.values(queue="escalated", claimed_by=None, claimed_until=None))
        else:  # skip: back to the queue for the others
            conn.execute(upd.values(claimed_by=None, claimed_until=None))
        return int(review_id)


def queue_counts(engine: Engine) -> list[dict[str, Any]]:
    """Per queue: pending jobs, how many are leased now, and the oldest pending job's time.

    Two index-only reads: the pending index for counts and ages, the lease index for the
    (few) jobs being reviewed right now.
    """
    j = review_jobs.c
    pending = (
        sa.select(j.queue, sa.func.count().label("pending"), sa.func.min(j.enqueued_at))
        .where(j.decided_at.is_(None))
        .group_by(j.queue)
    )
    leased = (
        sa.select(j.queue, sa.func.count())
        .where(j.decided_at.is_(None), j.claimed_until > _now())
        .group_by(j.queue)
    )
    with unavailable("counting queues"), engine.connect() as conn:
        found = {q: (n, oldest) for q, n, oldest in conn.execute(pending)}
        claimed = {q: n for q, n in conn.execute(leased)}
    return [
        {
            "queue": name,
            "title": title,
            "pending": found.get(name, (0, None))[0],
            "oldest": found.get(name, (0, None))[1],
            "claimed": claimed.get(name, 0),
        }
        for name, title in QUEUES.items()
    ]
