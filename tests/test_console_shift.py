"""A shift's store operations on real PostgreSQL (and the demo's SQLite): a decision after the
lease ran out, lease renewal, notes, undo as an appended row (who may, how long), and the
metrics and export taking the latest decision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.errors import ReviewError
from modq.store.review_metrics import overturn_rates
from modq.store.review_shift import recent_decisions, renew_lease, undo
from modq.store.reviews import claim_next, decide
from modq.store.schema import listing_decisions, review_jobs, reviews
from tests.consolekit import migrated_engine, review_listing

PHOTO = Path("/nonexistent/photo.jpg")
WINDOW = 600.0


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine(request.param, tmp_path, "modq_test_shift") as engine:
        yield engine


def _expire(engine: Engine, listing_id: str) -> None:
    with engine.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(sa.update(review_jobs).where(review_jobs.c.listing_id == listing_id)
                     .values(claimed_until=past))  # fmt: skip


def _final(engine: Engine, listing_id: str) -> tuple[str, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(listing_decisions.c.final_decision, listing_decisions.c.decided_by).where(
                listing_decisions.c.listing_id == listing_id
            )
        ).first()
    return (row[0], row[1]) if row else None


def test_a_lease_that_ran_out_still_counts_while_nobody_else_claimed(engine: Engine) -> None:
    review_listing(engine, "a", ["category_mismatch: x"], [PHOTO])
    assert claim_next(engine, "ann", "category") is not None
    _expire(engine, "a")
    until = renew_lease(engine, "a", "ann", 600)
    assert until is not None and until > datetime.now(UTC) + timedelta(seconds=500)
    assert renew_lease(engine, "a", "bob", 600) is None  # not Bob's to renew
    _expire(engine, "a")
    decide(engine, "a", "ann", "approve", note="  fine on a closer look ")
    assert _final(engine, "a") == ("approve", "ann")
    with engine.connect() as conn:
        assert conn.execute(sa.select(reviews.c.note)).scalar_one() == "fine on a closer look"


def test_undo_appends_a_row_and_the_latest_decision_counts(engine: Engine) -> None:
    review_listing(engine, "a", ["nudity: photo 0: nudity.nsfw 0.7 >= review threshold 0.5"],
                   [PHOTO])  # fmt: skip
    assert claim_next(engine, "ann", "banned") is not None
    first = decide(engine, "a", "ann", "approve")
    assert overturn_rates(engine)["reason"][0]["overturned"] == 1
    # Bob (a moderator) may not undo Ann's decision: no IDOR through the review id.
    with pytest.raises(ReviewError, match="only the moderator"):
        undo(engine, first, "bob", is_lead=False, window_s=WINDOW)
    undo_id = undo(engine, first, "ann", is_lead=False, window_s=WINDOW)
    assert _final(engine, "a") is None
    assert overturn_rates(engine)["reason"] == []
    # The job is pending again and Ann holds it: she decides again at once.
    decide(engine, "a", "ann", "reject", reason_code="nudity", not_showing=[2, 1, 1])
    assert _final(engine, "a") == ("reject", "ann")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                reviews.c.id, reviews.c.decision, reviews.c.undoes, reviews.c.not_showing
            ).order_by(reviews.c.id)
        ).all()
    assert [(r.decision, r.undoes) for r in rows] == [
        ("approve", None), ("undo", first), ("reject", None)
    ]  # fmt: skip
    assert rows[1].id == undo_id and rows[2].not_showing == [1, 2]
    mine = recent_decisions(engine, "ann", WINDOW)
    assert [(d.decision, d.undone, d.undoable) for d in mine] == [
        ("reject", False, True), ("undo", False, False), ("approve", True, False)
    ]  # fmt: skip
    # Taken back once is enough; the latest decision is the only one to undo.
    with pytest.raises(ReviewError):
        undo(engine, first, "ann", is_lead=False, window_s=WINDOW)
    # A lead may undo anyone's, within the window; past it, nobody.
    with pytest.raises(ReviewError, match="too late"):
        undo(engine, rows[2].id, "lea", is_lead=True, window_s=0)
    undo(engine, rows[2].id, "lea", is_lead=True, window_s=WINDOW)
    assert _final(engine, "a") is None


def test_undo_of_an_escalation_puts_the_job_back_in_its_queue(engine: Engine) -> None:
    review_listing(engine, "e", ["category_mismatch: x"], [PHOTO])
    assert claim_next(engine, "ann", "category") is not None
    esc = decide(engine, "e", "ann", "escalate", reason_code="misleading_listing")
    skip = claim_next(engine, "lea", "escalated")
    assert skip is not None and skip.listing_id == "e"
    # A lead is on it now: Ann cannot pull it back from under her.
    with pytest.raises(ReviewError, match="lea is reviewing"):
        undo(engine, esc, "ann", is_lead=False, window_s=WINDOW)
    decide(engine, "e", "lea", "skip")
    undo(engine, esc, "ann", is_lead=False, window_s=WINDOW)
    with engine.connect() as conn:
        job = conn.execute(sa.select(review_jobs)).one()
    assert (job.queue, job.claimed_by, job.decided_at) == ("category", "ann", None)
