"""Review queue on real PostgreSQL: routing, leased claims (SKIP LOCKED), decisions, users."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.errors import ReviewError
from modq.store.database import migrate
from modq.store.reviews import claim_next, decide, queue_counts, release
from modq.store.schema import listing_decisions, review_jobs, reviews
from modq.store.users import count_attempts, forgive_attempt, get_user, upsert_user
from tests.conftest import create_database, drop_database
from tests.consolekit import migrated_engine, review_listing

PHOTO = Path("/nonexistent/photo.jpg")


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """PostgreSQL, and the SQLite file the demo falls back to."""
    with migrated_engine(request.param, tmp_path, "modq_test_cons") as engine:
        yield engine


def test_review_verdicts_are_routed_by_reason(engine: Engine) -> None:
    review_listing(engine, "a", ["category_near_miss: x"], [PHOTO])
    review_listing(engine, "b", ["nudity: photo 0: nudity.nsfw 0.6 >= review"], [PHOTO])
    review_listing(engine, "c", ["image_unreadable: photo 0: gone"], [PHOTO])
    review_listing(engine, "d", ["duplicate_photo: photo 0"], [PHOTO])
    review_listing(engine, "e", [], [PHOTO], decision="approve")
    counts = {c["queue"]: c["pending"] for c in queue_counts(engine)}
    assert counts == {
        "banned": 1, "category": 1, "unreadable": 1, "duplicates": 1, "other": 0, "escalated": 0
    }  # fmt: skip
    # A newer approve withdraws the pending job.
    review_listing(engine, "a", [], [PHOTO], decision="approve")
    with engine.connect() as conn:
        assert conn.execute(sa.select(review_jobs.c.listing_id)).scalars().all() != ["a"]
        assert "a" not in conn.execute(sa.select(review_jobs.c.listing_id)).scalars().all()


def test_claim_orders_by_severity_then_age_and_leases(engine: Engine) -> None:
    review_listing(engine, "near", ["category_near_miss: x"], [PHOTO])
    review_listing(engine, "mismatch", ["category_mismatch: x"], [PHOTO])
    review_listing(engine, "near2", ["category_near_miss: y"], [PHOTO])
    first = claim_next(engine, "ann", "category")
    assert first is not None and first.listing_id == "mismatch"
    # Ann's own claim comes back while it lasts; Bob gets the next one.
    again = claim_next(engine, "ann", "category")
    assert again is not None and again.listing_id == "mismatch"
    bob = claim_next(engine, "bob", "category")
    assert bob is not None and bob.listing_id == "near"
    # Bob cannot decide Ann's job.
    with pytest.raises(ReviewError):
        decide(engine, "mismatch", "bob", "approve")
    # An expired lease returns the job to the queue.
    with engine.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(sa.update(review_jobs).where(review_jobs.c.listing_id == "mismatch")
                     .values(claimed_until=past))  # fmt: skip
    carl = claim_next(engine, "carl", "category")
    assert carl is not None and carl.listing_id == "mismatch"
    # Ann's lease ran out and Carl claimed it: her decision is refused, naming him.
    with pytest.raises(ReviewError, match="claimed by carl, not you"):
        decide(engine, "mismatch", "ann", "approve")
    decide(engine, "mismatch", "carl", "recategorise", new_category="electronics.laptop")
    with engine.connect() as conn:
        final = conn.execute(sa.select(listing_decisions)).one()
        assert (final.final_decision, final.final_category, final.decided_by) == (
            "recategorise", "electronics.laptop", "carl"
        )  # fmt: skip
        row = conn.execute(sa.select(reviews)).one()
        assert (row.model_version, row.policy_version) == ("test-model-1", "test-policy-1")
    # Skip puts the job back for others but not for the skipper; escalate moves it to leads.
    decide(engine, "near", "bob", "skip")
    nxt = claim_next(engine, "bob", "category")
    assert nxt is not None and nxt.listing_id == "near2"
    with pytest.raises(ReviewError, match="needs a reason"):
        decide(engine, "near2", "bob", "escalate")
    decide(engine, "near2", "bob", "escalate", reason_code="misleading_listing")
    assert claim_next(engine, "bob", "category") is None
    ann = claim_next(engine, "ann", "category")
    assert ann is not None and ann.listing_id == "near"
    assert release(engine, "ann") == 1
    lead = claim_next(engine, "lee", "escalated")
    assert lead is not None and lead.listing_id == "near2"
    with pytest.raises(ReviewError, match="escalated already"):
        decide(engine, "near2", "lee", "escalate", reason_code="misleading_listing")
    decide(engine, "near2", "lee", "reject", reason_code="misleading_listing")
    # A lead moves Ann's claimed job to the banned queue: her lease ends.
    from modq.store.reviews import move_job

    ann2 = claim_next(engine, "ann", "category")
    assert ann2 is not None and ann2.listing_id == "near"
    assert move_job(engine, "near", "banned")
    with pytest.raises(ReviewError):
        decide(engine, "near", "ann", "approve")
    moved = claim_next(engine, "carl", "banned")
    assert moved is not None and moved.listing_id == "near"


def test_concurrent_claimers_get_distinct_jobs(engine: Engine) -> None:
    for i in range(30):
        review_listing(engine, f"l{i:02d}", ["prohibited_item: photo 0"], [PHOTO])
    got: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        claim = claim_next(engine, name, "banned")
        assert claim is not None
        with lock:
            got.append(claim.listing_id)

    threads = [threading.Thread(target=claimer, args=(f"m{i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 10 and len(set(got)) == 10


def test_users_and_lockout_counter(engine: Engine) -> None:
    assert upsert_user(engine, "ann", "moderator", "h1")
    first = get_user(engine, "ann")
    assert first is not None
    # A reset (password and role) moves the session generation on, ending old sessions.
    assert not upsert_user(engine, "ann", "lead", "h2")
    user = get_user(engine, "ann")
    assert user is not None and user.role == "lead" and user.session_gen == first.session_gen + 1
    with pytest.raises(ReviewError):
        upsert_user(engine, "bob", "king", "h")
    now = datetime.now(UTC)
    until = now + timedelta(minutes=15)
    counts = [count_attempts(engine, ["k"], now, until)["k"] for _ in range(4)]
    assert counts == [1, 2, 3, 4]
    # A window that has ended starts again at 1; clearing forgets the key.
    later = until + timedelta(seconds=1)
    assert count_attempts(engine, ["k"], later, later + timedelta(minutes=15)) == {"k": 1}
    # A right password forgets the pair's count and takes one attempt back from the address.
    count_attempts(engine, ["a"], later, later + timedelta(minutes=15))
    forgive_attempt(engine, "k", "a", later)
    assert count_attempts(engine, ["k", "a"], later, later + timedelta(minutes=15)) == {
        "a": 1, "k": 1
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_console_tables_mirror_migration(backend: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modq.store.schema import metadata

    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else create_database()
    try:
        migrate(url)
        eng = sa.create_engine(url)
        with eng.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        eng.dispose()
        ours = ("users", "review_jobs", "reviews", "listing_decisions", "ix_listings_seller_id")
        assert [d for d in diffs if any(f"'{t}'" in repr(d) for t in ours)] == []
    finally:
        if backend == "postgresql":
            drop_database(url)


def test_modq_verdicts_shows_the_human_decision_beside_the_machine(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    from modq.cli.report import print_verdicts
    from modq.store.queries import query_verdicts

    review_listing(engine, "h1", ["category_mismatch: x"], [PHOTO])
    claim = claim_next(engine, "ann", "category")
    assert claim is not None
    decide(engine, "h1", "ann", "recategorise", new_category="electronics.phone")
    (row,) = query_verdicts(engine, listing="h1")
    assert (row["decision"], row["human_decision"], row["human_category"]) == (
        "review", "recategorise", "electronics.phone"
    )  # fmt: skip
    print_verdicts([row])
    assert "→ electronics.phone" in capsys.readouterr().out


def test_users_add_reads_the_password_from_stdin(engine: Engine) -> None:
    from click.testing import CliRunner

    from modq.cli.main import main

    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        main,
        ["users", "add", "zoe", "--role", "lead"],
        input="a long password\n",
        env={"MODQ_DATABASE_URL": url},
    )
    short = CliRunner().invoke(
        main, ["users", "add", "bob"], input="short\n", env={"MODQ_DATABASE_URL": url}
    )
    assert result.exit_code == 0, result.output
    assert "user zoe (lead) created" in result.output
    user = get_user(engine, "zoe")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert short.exit_code != 0 and get_user(engine, "bob") is None


def test_search_filters_and_pages(engine: Engine) -> None:
    from modq.store.review_views import PAGE_SIZE, SearchQuery, search

    for i in range(PAGE_SIZE + 5):
        review_listing(engine, f"s{i:03d}", ["nudity: photo 0: x"], [PHOTO], seller="big")
    review_listing(engine, "m1", ["category_mismatch: x"], [PHOTO], seller="small")
    review_listing(engine, "ok", [], [PHOTO], seller="small", decision="approve")
    claim = claim_next(engine, "ann", "category")
    assert claim is not None and claim.listing_id == "m1"
    decide(engine, "m1", "ann", "reject", reason_code="category_mismatch")

    def ids(**kw: object) -> list[str]:
        rows, _ = search(engine, SearchQuery(**kw))  # type: ignore[arg-type]
        return sorted(r["listing_id"] for r in rows)

    assert ids(seller_id="small") == ["m1", "ok"]
    assert ids(seller_id="small", reason="category_mismatch") == ["m1"]
    assert ids(seller_id="small", decision="approve") == ["ok"]
    assert ids(final="reject") == ["m1"]
    assert ids(seller_id="small", final="none") == ["ok"]
    assert ids(reason="category_near_miss") == []
    first, more = search(engine, SearchQuery(seller_id="big"))
    second, last = search(engine, SearchQuery(seller_id="big", page=2))
    assert (len(first), more, len(second), last) == (PAGE_SIZE, True, 5, False)
    assert not {r["listing_id"] for r in first} & {r["listing_id"] for r in second}
