"""The store on a real database (PostgreSQL, and the SQLite fallback): idempotent upserts, the
current-verdict rules, rejected events, the moderators' query filters, and outage handling."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.events import ListingEvent
from modq.domain.verdicts import PhotoResult, RejectedEvent, Verdict
from modq.errors import StoreUnavailable, UsageError
from modq.store import verdicts as verdicts_module
from modq.store.database import make_engine, migrate
from modq.store.queries import count_verdicts, list_rejected, query_verdicts
from modq.store.verdicts import record_rejected, save_batch
from tests.conftest import create_database, drop_database

# CASCADE: every table that references listings goes too (the review console's of 0005, the
# quality checks and policy examples of 0012, whatever comes next).
TRUNCATE = "TRUNCATE listings, verdicts, rejected_events RESTART IDENTITY CASCADE"


@pytest.fixture(scope="module")
def pg_store_url() -> Iterator[str]:
    # A database of this module's own: the tests below empty it between tests.
    url = create_database("modq_test_store")
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'modq.db'}"
        migrate(url)
    else:
        url = request.getfixturevalue("pg_store_url")
    eng = make_engine(url)
    if request.param == "postgresql":
        with eng.begin() as conn:
            conn.execute(sa.text(TRUNCATE))
    yield eng
    eng.dispose()


def event(listing: str = "L1", version: int = 1, **kw: Any) -> ListingEvent:
    values: dict[str, Any] = {
        "listing_id": listing,
        "listing_version": version,
        "declared_category": "fashion.shoes",
        "images": ["s3://photos/a.jpg", "s3://photos/b.jpg"],
        "title": f"{listing} v{version}",
        "seller_id": "seller-7",
    }
    values.update(kw)
    return ListingEvent(**values)


def verdict(listing: str = "L1", version: int = 1, **kw: Any) -> Verdict:
    values: dict[str, Any] = {
        "listing_id": listing,
        "listing_version": version,
        "declared_category": "fashion.shoes",
        "decision": "approve",
        "reasons": [],
        "suggested": [("fashion.shoes", 0.91), ("fashion.hat", 0.05)],
        "best_photo": 0,
        "scores": {"fashion.shoes": 0.91, "fashion.hat": 0.05},
        "photos": [
            PhotoResult(index=0, ref="s3://photos/a.jpg", top=[("fashion.shoes", 0.93)]),
            PhotoResult(index=1, ref="s3://photos/b.jpg", error_code="image_unreadable"),
        ],
        "model_version": "m1",
        "policy_version": "p1",
        "timings": {"infer_ms": 3.5},
    }
    values.update(kw)
    return Verdict(**values)


def save(engine: Engine, *verdicts: Verdict) -> list[int]:
    events = [event(v.listing_id, v.listing_version, declared_category=v.declared_category)
              for v in verdicts]  # fmt: skip
    return save_batch(engine, events, list(verdicts))


def rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def current(engine: Engine, listing: str) -> dict[str, Any]:
    [row] = query_verdicts(engine, listing=listing)
    return row


def test_same_verdict_saved_three_times_is_one_row(engine: Engine) -> None:
    v = verdict()
    first = save(engine, v)
    second = save(engine, v)
    third = save_batch(engine, [event(), event()], [v, v])  # redelivered inside one batch
    assert first == second == [third[0]] and third[0] == third[1]
    assert rows(engine, "verdicts") == 1
    assert rows(engine, "listings") == 1
    assert count_verdicts(engine, current_only=False) == 1


def test_saved_verdict_reads_back_whole(engine: Engine) -> None:
    v = verdict(decision="review", reasons=["category_mismatch"], best_photo=None)
    [vid] = save(engine, v)
    got = current(engine, "L1")
    assert got["id"] == vid and got["current"] is True
    assert got["decision"] == "review" and got["reasons"] == [{"code": "category_mismatch"}]
    assert got["suggested"] == [("fashion.shoes", 0.91), ("fashion.hat", 0.05)]
    assert got["best_photo"] is None
    assert got["scores"] == v.scores and got["timings"] == {"infer_ms": 3.5}
    assert [PhotoResult.model_validate(p) for p in got["photos"]] == v.photos
    assert (got["model_version"], got["policy_version"], got["source"]) == ("m1", "p1", "new")
    assert got["created_at"].tzinfo is not None
    assert got["title"] == "L1 v1"


def test_ids_come_back_in_input_order(engine: Engine) -> None:
    batch = [verdict(f"L{i}") for i in (5, 2, 9, 1, 7)]
    ids = save(engine, *batch)
    assert len(set(ids)) == 5
    for v, vid in zip(batch, ids, strict=True):
        assert current(engine, v.listing_id)["id"] == vid


def test_newer_listing_version_wins_and_older_redelivery_does_not(engine: Engine) -> None:
    [v1_id] = save(engine, verdict(version=1, decision="approve"))
    [v2_id] = save(engine, verdict(version=2, decision="reject", reasons=["prohibited"]))
    assert current(engine, "L1")["id"] == v2_id

    # Version 1 arrives again (redelivery): its row is reused and it does not take over.
    assert save(engine, verdict(version=1, decision="approve")) == [v1_id]
    now = current(engine, "L1")
    assert (now["id"], now["listing_version"], now["decision"]) == (v2_id, 2, "reject")
    assert now["title"] == "L1 v2"  # the listing keeps the newest event's data
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT listing_version FROM listings")).scalar_one()
    assert version == 2


def test_older_version_arriving_late_for_the_first_time_does_not_take_over(
    engine: Engine,
) -> None:
    [v2_id] = save(engine, verdict(version=2))
    [v1_id] = save(engine, verdict(version=1))  # a newer row, for an older listing version
    assert v1_id > v2_id
    assert current(engine, "L1")["id"] == v2_id
    assert count_verdicts(engine, current_only=False) == 2


def test_both_versions_in_one_batch_newest_wins(engine: Engine) -> None:
    ids = save(engine, verdict(version=3), verdict(version=2))
    assert current(engine, "L1")["id"] == ids[0]


def test_remoderation_adds_a_row_that_becomes_current(engine: Engine) -> None:
    [old_id] = save(engine, verdict(model_version="m1", decision="review"))
    [new_id] = save(engine, verdict(model_version="m2", decision="approve", source="backfill"))
    assert new_id != old_id
    now = current(engine, "L1")
    assert (now["id"], now["model_version"], now["source"]) == (new_id, "m2", "backfill")

    history = query_verdicts(engine, listing="L1", current_only=False)
    assert {(h["model_version"], h["current"]) for h in history} == {("m1", False), ("m2", True)}
    assert count_verdicts(engine, current_only=False) == 2
    assert count_verdicts(engine) == 1

    # A late redelivery of the m1 message must not undo the re-moderation.
    assert save(engine, verdict(model_version="m1", decision="review")) == [old_id]
    assert current(engine, "L1")["id"] == new_id


def test_verdict_without_its_event_still_gets_a_listing(engine: Engine) -> None:
    [vid] = save_batch(engine, [], [verdict("L9")])
    assert current(engine, "L9")["id"] == vid
    # The real event arriving later fills in what the verdict could not know.
    save_batch(engine, [event("L9")], [verdict("L9")])
    assert current(engine, "L9")["title"] == "L9 v1"


def test_rejected_events_keep_payload_and_reason(engine: Engine) -> None:
    bad = RejectedEvent(stage="worker", reason="images: too many", payload='{"x": "é"}')
    save_batch(engine, [event()], [verdict()], [bad])
    record_rejected(
        engine, [RejectedEvent(stage="submit", reason="not JSON", payload="\x00{", listing_id="L3")]
    )
    newest, older = list_rejected(engine)
    assert (newest["stage"], newest["reason"], newest["listing_id"]) == ("submit", "not JSON", "L3")
    # PostgreSQL cannot hold NUL in text: it is replaced, the rest of the payload kept.
    assert newest["payload"] == "\ufffd{"
    assert (older["stage"], older["reason"], older["payload"]) == (
        "worker", "images: too many", '{"x": "é"}'
    )  # fmt: skip
    assert older["listing_id"] is None and older["received_at"].tzinfo is not None
    assert len(list_rejected(engine, limit=1)) == 1


def test_non_finite_scores_are_stored_as_null(engine: Engine) -> None:
    save(engine, verdict(scores={"fashion.shoes": float("nan"), "fashion.hat": 0.1}))
    assert current(engine, "L1")["scores"] == {"fashion.shoes": None, "fashion.hat": 0.1}


def test_query_filters(engine: Engine) -> None:
    save(
        engine,
        verdict("A1", decision="approve"),
        verdict("A2", decision="reject", declared_category="electronics.phone"),
    )
    first_batch = query_verdicts(engine, limit=0)
    save(
        engine,
        verdict("B1", decision="review", declared_category="electronics.phone"),
        verdict("B2", decision="review"),
        verdict("B3", decision="approve"),
    )
    since = max(v["created_at"] for v in query_verdicts(engine, listing="B1"))

    def ids(**kw: Any) -> set[str]:
        return {v["listing_id"] for v in query_verdicts(engine, **kw)}

    assert len(first_batch) == 2
    assert ids(limit=0) == {"A1", "A2", "B1", "B2", "B3"}
    assert ids(decision="review") == {"B1", "B2"}
    assert ids(category="electronics.phone") == {"A2", "B1"}
    assert ids(category="electronics.phone", decision="review") == {"B1"}
    assert ids(listing="B3") == {"B3"}
    assert ids(since=since) == {"B1", "B2", "B3"}
    assert count_verdicts(engine, since=since, decision="approve") == 1
    assert len(query_verdicts(engine, limit=2)) == 2
    newest_first = [v["created_at"] for v in query_verdicts(engine, limit=0)]
    assert newest_first == sorted(newest_first, reverse=True)
    assert query_verdicts(engine, decision="reject", category="fashion.shoes") == []
    with pytest.raises(UsageError, match="unknown decision 'aprove'"):
        query_verdicts(engine, decision="aprove")


def test_large_batches_are_split_into_several_statements(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verdicts_module, "_CHUNK", 3)
    batch = [verdict(f"C{i:02d}", version=1 + i % 2) for i in range(10)]
    ids = save(engine, *batch)
    assert len(set(ids)) == 10 and count_verdicts(engine) == 10
    assert save(engine, *reversed(batch)) == list(reversed(ids))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration  # the PostgreSQL driver, against a closed port
def test_unreachable_database_raises_store_unavailable() -> None:
    engine = make_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{_closed_port()}/modq")
    with pytest.raises(StoreUnavailable, match="database unavailable while saving 1 verdicts"):
        save_batch(engine, [event()], [verdict()])
    with pytest.raises(StoreUnavailable):
        query_verdicts(engine)
    with pytest.raises(StoreUnavailable):
        record_rejected(engine, [RejectedEvent(stage="worker", reason="r", payload="p")])
    engine.dispose()


def test_concurrent_writers_neither_deadlock_nor_lose_the_newest(pg_store_url: str) -> None:
    engine = make_engine(pg_store_url)
    with engine.begin() as conn:
        conn.execute(sa.text(TRUNCATE))
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(20):
                batch = [verdict(f"X{rng.randrange(20)}", rng.randint(1, 4)) for _ in range(16)]
                # Some events missing, so both listing paths (event, verdict only) interleave.
                events = [event(v.listing_id, v.listing_version) for v in batch[::2]]
                save_batch(engine, events, batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        query = sa.text("SELECT listing_id, max(listing_version) FROM verdicts GROUP BY 1")
        best = {lid: version for lid, version in conn.execute(query)}
    assert {v["listing_id"]: v["listing_version"] for v in query_verdicts(engine, limit=0)} == best
    engine.dispose()
