"""Quality checks on human decisions and policy examples, on real PostgreSQL: blind second
reviews sampled from decided listings, golden checks, agreement and accuracy, append-only
rows; and the metrics snapshot cache that keeps the metrics page cheap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.console.metrics_cache import MetricsCache
from modq.errors import ReviewError
from modq.store.database import make_engine, migrate
from modq.store.review_examples import choose_example, examples_by_reason
from modq.store.review_quality import (
    add_golden,
    answer,
    next_check,
    open_check,
    quality_summary,
    sample_second_reviews,
)
from modq.store.reviews import claim_next, decide
from modq.store.schema import listing_decisions, reviews
from tests.conftest import create_database, drop_database
from tests.consolekit import review_listing

PHOTO = Path("/nonexistent/photo.jpg")
NUDITY = "nudity: photo 0: nudity.nsfw 0.712 >= review threshold 0.5"


@pytest.fixture
def engine() -> Iterator[Engine]:
    url = create_database("modq_test_quality")
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_database(url)


def _decided(engine: Engine, listing_id: str, moderator: str, decision: str) -> None:
    review_listing(engine, listing_id, [NUDITY], [PHOTO, PHOTO])
    assert claim_next(engine, moderator, "banned") is not None
    decide(
        engine,
        listing_id,
        moderator,
        decision,
        reason_code="nudity" if decision == "reject" else None,
    )


def _audit(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(reviews).order_by(reviews.c.id))] + [
            tuple(r) for r in conn.execute(sa.select(listing_decisions))
        ]


def test_second_reviews_are_blind_counted_and_leave_the_decision_alone(engine: Engine) -> None:
    _decided(engine, "a", "ann", "reject")
    _decided(engine, "b", "ann", "approve")
    _decided(engine, "c", "bob", "approve")
    before = _audit(engine)
    assert sample_second_reviews(engine, "lea", 50, seed=1) == 3
    assert sample_second_reviews(engine, "lea", 5) == 0  # each decision sampled once
    with pytest.raises(ReviewError):
        sample_second_reviews(engine, "lea", 51)
    # Ann is never asked to check her own decisions; the lead who sampled is not asked either.
    seen = []
    while (item := next_check(engine, "ann")) is not None:
        assert item.listing_id == "c"
        answer(engine, item.id, "ann", "reject", "nudity")
        seen.append(item.listing_id)
    assert seen == ["c"]
    assert next_check(engine, "lea") is None
    answers = {"a": ("reject", "nudity"), "b": ("reject", "nudity")}
    while (item := next_check(engine, "cat")) is not None:
        answer(engine, item.id, "cat", *answers[item.listing_id])
        # Answered: closed to everyone, a second answer is refused.
        assert open_check(engine, item.id, "dan") is None
        with pytest.raises(ReviewError):
            answer(engine, item.id, "dan", "approve", None)
    summary = quality_summary(engine)
    assert {r["key"]: (r["agreed"], r["checked"]) for r in summary["moderator"]} == {
        "ann": (1, 2),
        "bob": (0, 1),
    }
    assert {r["key"]: (r["agreed"], r["checked"]) for r in summary["reason"]} == {
        "approve": (0, 2),
        "nudity": (1, 1),
    }
    assert summary["golden"] == []
    # Checks never touch the audit of decisions nor the listings' final decisions.
    assert _audit(engine) == before


def test_golden_checks_measure_accuracy_and_need_a_valid_answer(engine: Engine) -> None:
    review_listing(engine, "g1", [NUDITY], [PHOTO])
    review_listing(engine, "g2", [NUDITY], [PHOTO])
    with pytest.raises(ReviewError, match="reject reasons"):
        add_golden(engine, "lea", "g1", "reject", None)
    with pytest.raises(ReviewError, match="no listing"):
        add_golden(engine, "lea", "nope", "approve", None)
    add_golden(engine, "lea", "g1", "reject", "nudity")
    add_golden(engine, "lea", "g2", "approve", None)
    first = next_check(engine, "ann")
    assert first is not None and first.listing_id == "g1"
    with pytest.raises(ReviewError):
        answer(engine, first.id, "ann", "reject", "not-a-reason")
    answer(engine, first.id, "ann", "reject", "prohibited_item")  # right decision, wrong reason
    second = next_check(engine, "ann")
    assert second is not None
    answer(engine, second.id, "ann", "approve", None)
    golden = quality_summary(engine)["golden"]
    assert golden == [{"key": "ann", "checked": 2, "agreed": 1, "rate": 0.5}]


def test_policy_examples_come_from_decided_listings(engine: Engine) -> None:
    _decided(engine, "d", "ann", "reject")
    review_listing(engine, "open", [NUDITY], [PHOTO])
    with pytest.raises(ReviewError, match="decided"):
        choose_example(engine, "lea", "open", 0, "nudity")
    with pytest.raises(ReviewError, match="no such photo"):
        choose_example(engine, "lea", "d", 2, "nudity")
    with pytest.raises(ReviewError, match="no reason"):
        choose_example(engine, "lea", "d", 0, "made_up")
    for i in (0, 1, 0, 1, 1):
        choose_example(engine, "lea", "d", i, "nudity")
    choose_example(engine, "lea", "d", 0, "contact_details")
    assert examples_by_reason(engine, per_reason=1) == {
        "nudity": [("d", 1)],
        "contact_details": [("d", 0)],
    }
    assert examples_by_reason(engine)["nudity"] == [("d", 1), ("d", 0)]


def test_the_metrics_snapshot_is_reused_then_refreshed_in_the_background() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def compute(_engine: Any) -> dict[str, Any]:
        if calls:
            gate.wait(10)  # a refresh: held until the test lets it finish
        calls.append(len(calls))
        return {"n": len(calls)}

    cache = MetricsCache(None, 0.2, compute)  # type: ignore[arg-type]
    assert cache.get().values == {"n": 1}
    assert cache.get().values == {"n": 1} and len(calls) == 1
    deadline = time.monotonic() + 5
    while cache.get().age_s < 0.2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Stale: served at once while one background refresh runs (not one per request).
    assert cache.get().values == {"n": 1} and cache.get().values == {"n": 1}
    gate.set()
    while cache.get().values != {"n": 2}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(calls) == 2
    every_time = MetricsCache(None, 0, compute)  # type: ignore[arg-type]
    assert every_time.get().values == {"n": 3} and every_time.get().values == {"n": 4}
