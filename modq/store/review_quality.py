"""Quality checks on human decisions, in SQL: a lead samples decided listings for a second,
blind review, or sets golden ones (a known answer); moderators answer them without seeing
the expected answer; agreement and accuracy are counted from the answers.

Append-only: a check is inserted once and never edited; its one answer is a `quality_answers`
row (primary key = the check). Answering a check changes nothing about the listing: its
decision stays the one in `reviews` / `listing_decisions`.

Agreement: the answer's decision equals the expected one, and for a reject the reason too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from modq.domain.review import FINAL_DECISIONS, REJECT_REASONS
from modq.errors import ReviewError
from modq.store.database import unavailable
from modq.store.schema import listing_decisions, listings, quality_answers, quality_checks

# A sample is drawn from the latest decisions (an index on decided_at serves it), not from
# every decision ever: recent work is what a lead checks, and the read stays bounded.
SAMPLE_FROM = 1000
MAX_SAMPLE = 50
GOLDEN_DECISIONS = ("approve", "reject")


@dataclass(frozen=True)
class CheckItem:
    """What the answering moderator may see of a check: which listing, nothing of the
    expected answer nor whether it is golden."""

    id: int
    listing_id: str


def _validate(decision: str, reason_code: str | None, allowed: tuple[str, ...]) -> str | None:
    if decision not in allowed:
        raise ReviewError(f"a quality check takes one of {', '.join(allowed)}")
    if decision == "reject":
        if reason_code not in REJECT_REASONS:
            raise ReviewError("a reject needs one of the reject reasons")
        return reason_code
    return None


def sample_second_reviews(engine: Engine, lead: str, n: int, *, seed: int | None = None) -> int:
    """Add up to `n` blind second reviews of listings decided lately (each decision at most
    once); how many were added."""
    if not 1 <= n <= MAX_SAMPLE:
        raise ReviewError(f"sample between 1 and {MAX_SAMPLE} decisions")
    d, q = listing_decisions.c, quality_checks.c
    checked = sa.select(q.review_id).where(q.review_id.is_not(None))
    recent = (
        sa.select(d.listing_id, d.review_id, d.final_decision, d.reason_code, d.decided_by)
        .where(d.review_id.not_in(checked))
        .order_by(d.decided_at.desc())
        .limit(SAMPLE_FROM)
    )
    with unavailable("sampling decisions"), engine.begin() as conn:
        rows = list(conn.execute(recent))
        picked = random.Random(seed).sample(rows, min(n, len(rows)))
        for listing_id, review_id, decision, reason, moderator in picked:
            conn.execute(
                sa.insert(quality_checks).values(
                    kind="second",
                    listing_id=listing_id,
                    review_id=review_id,
                    expected_decision=decision,
                    expected_reason=reason if decision == "reject" else None,
                    first_moderator=moderator,
                    created_by=lead,
                )
            )
    return len(picked)


def add_golden(
    engine: Engine, lead: str, listing_id: str, decision: str, reason_code: str | None
) -> int:
    """A golden check: the lead's known answer for a listing; its id."""
    reason = _validate(decision, reason_code, GOLDEN_DECISIONS)
    with unavailable("adding a golden check"), engine.begin() as conn:
        known = conn.execute(
            sa.select(listings.c.listing_id).where(listings.c.listing_id == listing_id)
        ).first()
        if known is None:
            raise ReviewError(f"no listing {listing_id!r}")
        return int(
            conn.execute(
                sa.insert(quality_checks)
                .values(
                    kind="golden",
                    listing_id=listing_id,
                    expected_decision=decision,
                    expected_reason=reason,
                    created_by=lead,
                )
                .returning(quality_checks.c.id)
            ).scalar_one()
        )


def _open_to(moderator: str) -> sa.ColumnElement[bool]:
    """Unanswered checks `moderator` may answer: not on their own decision, not set by them."""
    q = quality_checks.c
    answered = sa.select(quality_answers.c.check_id)
    return sa.and_(
        q.id.not_in(answered),
        q.created_by != moderator,
        sa.or_(q.first_moderator.is_(None), q.first_moderator != moderator),
    )


def next_check(engine: Engine, moderator: str) -> CheckItem | None:
    """The oldest check `moderator` may answer (golden and second reviews mixed, in order)."""
    q = quality_checks.c
    query = sa.select(q.id, q.listing_id).where(_open_to(moderator)).order_by(q.id).limit(1)
    with unavailable("reading quality checks"), engine.connect() as conn:
        row = conn.execute(query).first()
    return CheckItem(int(row[0]), row[1]) if row is not None else None


def open_check(engine: Engine, check_id: int, moderator: str) -> CheckItem | None:
    q = quality_checks.c
    query = sa.select(q.id, q.listing_id).where(q.id == check_id, _open_to(moderator))
    with unavailable("reading a quality check"), engine.connect() as conn:
        row = conn.execute(query).first()
    return CheckItem(int(row[0]), row[1]) if row is not None else None


def answer(
    engine: Engine, check_id: int, moderator: str, decision: str, reason_code: str | None
) -> None:
    """Record `moderator`'s blind answer; ReviewError when the check is not theirs to answer
    (their own decision, set by them, unknown) or someone answered it first."""
    reason = _validate(decision, reason_code, FINAL_DECISIONS)
    if open_check(engine, check_id, moderator) is None:
        raise ReviewError("that check is not open to you (answered, or on your own decision)")
    try:
        with unavailable("recording a quality answer"), engine.begin() as conn:
            conn.execute(
                sa.insert(quality_answers).values(
                    check_id=check_id, moderator=moderator, decision=decision, reason_code=reason
                )
            )
    except IntegrityError as exc:
        raise ReviewError("someone answered that check first") from exc


def quality_summary(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Agreement of second reviews per first moderator and per expected reason (or decision
    when not a reject), and each answering moderator's accuracy on golden checks."""
    q, a = quality_checks.c, quality_answers.c
    agreed = sa.and_(
        a.decision == q.expected_decision,
        sa.or_(q.expected_decision != "reject", a.reason_code == q.expected_reason),
    )
    n, ok = sa.func.count().label("n"), sa.func.count().filter(agreed).label("ok")
    joined = quality_checks.join(quality_answers, a.check_id == q.id)
    second = q.kind == "second"
    reason_key = sa.func.coalesce(q.expected_reason, q.expected_decision)
    queries = {
        "moderator": sa.select(q.first_moderator, n, ok).where(second).group_by(q.first_moderator),
        "reason": sa.select(reason_key, n, ok).where(second).group_by(reason_key),
        "golden": sa.select(a.moderator, n, ok).where(q.kind == "golden").group_by(a.moderator),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    with unavailable("reading quality checks"), engine.connect() as conn:
        for name, query in queries.items():
            rows = conn.execute(query.select_from(joined).order_by(sa.text("1")))
            out[name] = [
                {"key": k, "checked": total, "agreed": good, "rate": good / total}
                for k, total, good in rows
            ]
    return out
