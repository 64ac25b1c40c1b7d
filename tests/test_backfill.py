"""`modq backfill` on real Redis and PostgreSQL, with real `modq` processes.

The selection (`--stale`, export files), the high-water mark (the queue never exceeds it while
nobody consumes), resuming after SIGKILL with no gaps and no duplicates, `--restart`, new
listings drained before backfill work by a real worker, and the verdict history and
`modq verdicts diff` after a re-moderation.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent
from modq.domain.verdicts import PhotoResult, Verdict
from modq.ingest.broker import TASK_NAME, create_app
from modq.ingest.publish import publish_bodies, queue_size
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.checkpoints import job_status
from modq.store.database import make_engine, migrate
from modq.store.history import Side, diff_verdicts
from modq.store.queries import list_rejected, query_verdicts
from modq.store.schema import listings, verdicts
from modq.store.verdicts import save_batch
from tests.conftest import create_database, drop_database
from tests.photokit import colour_jpeg
from tests.workerkit import running_worker, settings_env

CATEGORIES = ["fashion.shoes", "fashion.hat", "food.fruit"]
DEPLOYED_MODEL = "tiny-1"  # tests.modelkit's default version
OLD_MODEL = "tiny-0"


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backfill-photos")
    for category in CATEGORIES:
        (root / f"{category}.jpg").write_bytes(colour_jpeg(category))
    return root


@pytest.fixture
def settings(make_settings: Callable[..., Settings], photo_root: Path) -> Iterator[Settings]:
    """A database and queues of this test's own: a backfill walks the whole listings table."""
    url = create_database("modq_test_backfill")
    migrate(url)
    suffix = uuid.uuid4().hex[:8]
    yield make_settings(
        database_url=url,
        image_roots=[str(photo_root)],
        detectors=[],
        batch_size=4,
        batch_interval_s=0.2,
        queue_new=f"test-bf-{suffix}.new",
        queue_backfill=f"test-bf-{suffix}.backfill",
    )
    drop_database(url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def broker(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.broker_url)
    yield client
    client.delete(settings.queue_new, settings.queue_backfill)
    client.close()


@pytest.fixture
def policy_version(settings: Settings) -> str:
    return Policy.load(settings.policy_path).version


def event_for(listing_id: str, photo_root: Path, i: int, version: int = 1) -> ListingEvent:
    category = CATEGORIES[i % len(CATEGORIES)]
    return ListingEvent(
        listing_id=listing_id,
        declared_category=category,
        images=[str(photo_root / f"{category}.jpg")],
        title=f"listing {listing_id}",
        listing_version=version,
        created_at=datetime(2026, 1, 1 + i % 28, tzinfo=UTC),
    )


def verdict_for(
    event: ListingEvent,
    model: str,
    policy: str,
    decision: str = "review",
    version: int | None = None,
) -> Verdict:
    return Verdict(
        listing_id=event.listing_id,
        listing_version=version or event.listing_version,
        declared_category=event.declared_category,
        decision=decision,  # type: ignore[arg-type]
        reasons=[],
        suggested=[],
        best_photo=0,
        scores={},
        photos=[PhotoResult(index=0, ref=event.images[0])],
        model_version=model,
        policy_version=policy,
    )


def seed(
    engine: Engine,
    photo_root: Path,
    n: int,
    *,
    model: str | None,
    policy: str,
    prefix: str = "old",
) -> list[ListingEvent]:
    """`n` stored listings; with a verdict (decision review) by `model` unless None."""
    events = [event_for(f"{prefix}-{i:04d}", photo_root, i) for i in range(n)]
    made = [verdict_for(e, model, policy) for e in events] if model else []
    save_batch(engine, events, made)
    return events


def backfill_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "modq", "backfill", *args]


def run_backfill_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        backfill_args(*args),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def queued_ids(broker: redis.Redis, queue: str) -> list[str]:
    """The listing ids of the messages waiting in `queue` (kombu message → Celery body)."""
    ids = []
    for raw in broker.lrange(queue, 0, -1):
        ids.append(_listing_id(raw))
    return ids


def _listing_id(raw: bytes) -> str:
    message = json.loads(raw)
    _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert kwargs["source"] == "backfill"
    return str(kwargs["event"]["listing_id"])


def poll(probe: Callable[[], Any], timeout: float, what: str, proc: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def current_models(engine: Engine) -> dict[str, tuple[str, str]]:
    query = sa.select(listings.c.listing_id, verdicts.c.model_version, verdicts.c.source).join(
        verdicts, verdicts.c.id == listings.c.current_verdict_id
    )
    with engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(query)}


def test_stale_selects_exactly_the_listings_with_older_versions(
    settings: Settings,
    engine: Engine,
    broker: redis.Redis,
    photo_root: Path,
    policy_version: str,
) -> None:
    e = {name: event_for(name, photo_root, i) for i, name in enumerate("abcdef")}
    save_batch(engine, [e["a"]], [verdict_for(e["a"], OLD_MODEL, policy_version)])
    save_batch(engine, [e["b"]], [verdict_for(e["b"], DEPLOYED_MODEL, "older-policy")])
    save_batch(engine, [e["c"]], [verdict_for(e["c"], DEPLOYED_MODEL, policy_version)])
    save_batch(engine, [e["d"]], [])  # a listing that never got a verdict
    edited = e["e"].model_copy(update={"listing_version": 2})  # verdict for version 1 only
    save_batch(engine, [edited], [verdict_for(e["e"], DEPLOYED_MODEL, policy_version)])
    # Re-moderated already: its newest verdict (current) is by the deployed versions.
    save_batch(engine, [e["f"]], [verdict_for(e["f"], OLD_MODEL, policy_version)])
    save_batch(engine, [e["f"]], [verdict_for(e["f"], DEPLOYED_MODEL, policy_version)])

    dry = run_backfill_cli(settings, "--stale", "--dry-run", "--no-progress")
    assert "would queue 4, skip 0, already current 0" in dry.stdout, dry.stdout
    everything = run_backfill_cli(settings, "--dry-run", "--no-progress")
    assert "would queue 4, skip 0, already current 2" in everything.stdout, everything.stdout
    forced = run_backfill_cli(settings, "--force", "--dry-run", "--no-progress")
    assert "would queue 6, skip 0, already current 0" in forced.stdout, forced.stdout
    assert queue_size(settings, settings.queue_backfill) == 0  # a dry run publishes nothing

    done = run_backfill_cli(settings, "--stale")
    assert "queued 4, skipped 0, already current 0" in done.stdout, done.stdout
    assert sorted(queued_ids(broker, settings.queue_backfill)) == ["a", "b", "d", "e"]
    bodies = {
        json.loads(base64.b64decode(json.loads(raw)["body"]))[1]["event"]["listing_id"]: raw
        for raw in broker.lrange(settings.queue_backfill, 0, -1)
    }
    assert set(bodies) == {"a", "b", "d", "e"}
    message = json.loads(base64.b64decode(json.loads(bodies["e"])["body"]))[1]
    # Rebuilt from the stored row: the latest version, its photos and category.
    assert message["event"]["listing_version"] == 2
    assert message["event"]["images"] == list(e["e"].images)
    assert message["event"]["declared_category"] == e["e"].declared_category


def test_the_queue_never_exceeds_the_high_water_mark(
    settings: Settings, engine: Engine, broker: redis.Redis, photo_root: Path, tmp_path: Path
) -> None:
    events = seed(engine, photo_root, 120, model=None, policy="p")
    mark, page = 35, 10
    err = tmp_path / "backfill.err"
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            backfill_args("--page-size", str(page), "--high-water", str(mark)),
            env=settings_env(settings),
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    drained: list[str] = []
    highest, waits = 0, 0
    try:
        while proc.poll() is None:
            depth = broker.llen(settings.queue_backfill)
            highest = max(highest, depth)
            assert depth <= mark, f"queue at {depth} above the high-water mark {mark}"
            if depth > mark - page:
                # Blocked: the next page does not fit. It must say so, then move on once we
                # (the only consumer) take a few messages.
                poll(lambda: "waiting for workers" in err.read_text(), 30, "the wait", proc)
                waits += 1
                drained += [_listing_id(m) for m in broker.rpop(settings.queue_backfill, 7) or []]
            time.sleep(0.02)
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.read_text()
    assert "queued 120, skipped 0, already current 0" in out, out
    drained += queued_ids(broker, settings.queue_backfill)
    assert sorted(drained) == sorted(e.listing_id for e in events)  # no gaps, no duplicates
    assert waits >= 5 and highest > mark - page


def test_killed_backfill_resumes_with_no_gaps_and_history_is_kept(
    settings: Settings,
    engine: Engine,
    broker: redis.Redis,
    photo_root: Path,
    policy_version: str,
    tmp_path: Path,
) -> None:
    events = seed(engine, photo_root, 60, model=OLD_MODEL, policy=policy_version)
    ids = sorted(e.listing_id for e in events)
    job = "resume-test"
    args = ["--job", job, "--page-size", "10", "--no-progress"]
    proc = subprocess.Popen(
        backfill_args(*args, "--high-water", "20"),
        env=settings_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Two pages published and checkpointed; the third waits for room under the mark.
        poll(lambda: (job_status(engine, job) or {}).get("queued") == 20, 60, "2 pages", proc)
        poll(lambda: queue_size(settings, settings.queue_backfill) == 20, 10, "20 queued", proc)
        twin = subprocess.run(
            backfill_args(*args), env=settings_env(settings), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert twin.returncode == 1 and "already running" in twin.stderr, twin.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    status = job_status(engine, job)
    assert status is not None and status["finished_at"] is None
    assert status["last_listing_id"] == ids[19]

    resumed = run_backfill_cli(settings, *args, "--high-water", "1000")
    assert f"job {job} (resumed): queued 60, skipped 0, already current 0" in resumed.stdout
    queued = queued_ids(broker, settings.queue_backfill)
    assert sorted(queued) == ids, Counter(queued).most_common(3)  # no gaps, no duplicates

    again = run_backfill_cli(settings, *args)
    assert "already finished" in again.stdout
    assert queue_size(settings, settings.queue_backfill) == 60

    with running_worker(settings, tmp_path / "worker.log", "--queues", "backfill") as worker:
        worker.wait_for(
            lambda: (
                all(m == (DEPLOYED_MODEL, "backfill") for m in current_models(engine).values())
                and len(current_models(engine)) == 60
            ),
            120,
            "all 60 listings re-moderated",
        )
    # Every listing: the old verdict kept for audit, the new one current; nothing twice.
    for listing_id in ids:
        rows = query_verdicts(engine, listing=listing_id, limit=0, current_only=False)
        assert sorted((r["model_version"], r["current"]) for r in rows) == [
            (OLD_MODEL, False),
            (DEPLOYED_MODEL, True),
        ]

    # Colour photos of their declared category: the review verdicts become approvals.
    rows = diff_verdicts(engine, Side(model_version=OLD_MODEL), Side(model_version=DEPLOYED_MODEL))
    per_category = Counter(e.declared_category for e in events)
    assert rows == [
        {"category": c, "from": "review", "to": "approve", "listings": per_category[c]}
        for c in sorted(per_category)
    ]
    cli = subprocess.run(
        [sys.executable, "-m", "modq", "verdicts", "diff", "--from-model", OLD_MODEL,
         "--to-model", DEPLOYED_MODEL],
        env=settings_env(settings), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "60 of 60 listings changed decision (100.0%)" in cli.stdout, cli.stdout
    assert "fashion.hat" in cli.stdout and "review   →  approve" in cli.stdout

    # Now everything is current: starting the job over queues nothing.
    restarted = run_backfill_cli(settings, *args, "--restart")
    assert "queued 0, skipped 0, already current 60" in restarted.stdout, restarted.stdout


def test_restart_starts_over_and_a_dry_run_records_nothing(
    settings: Settings, engine: Engine, broker: redis.Redis, photo_root: Path
) -> None:
    seed(engine, photo_root, 30, model=None, policy="p")
    dry = run_backfill_cli(settings, "--job", "again", "--dry-run", "--no-progress")
    assert "would queue 30" in dry.stdout
    assert job_status(engine, "again") is None

    first = run_backfill_cli(settings, "--job", "again", "--page-size", "7")
    assert "job again: queued 30, skipped 0, already current 0" in first.stdout, first.stdout
    assert "already finished" in run_backfill_cli(settings, "--job", "again").stdout
    assert broker.llen(settings.queue_backfill) == 30

    # Same name, other selection: refused rather than silently mixing two selections.
    clash = subprocess.run(
        backfill_args("--job", "again", "--category", "food.fruit"),
        env=settings_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert clash.returncode == 1 and "another selection" in clash.stderr, clash.stderr

    over = run_backfill_cli(settings, "--job", "again", "--restart", "--category", "food.fruit")
    assert "job again: queued 10, skipped 0, already current 0" in over.stdout, over.stdout
    status = job_status(engine, "again")
    assert status is not None and status["queued"] == 10 and status["finished_at"] is not None
    assert broker.llen(settings.queue_backfill) == 40


def test_export_files_queue_unseen_listings_and_report_bad_lines(
    settings: Settings,
    engine: Engine,
    broker: redis.Redis,
    photo_root: Path,
    policy_version: str,
    tmp_path: Path,
) -> None:
    known = event_for("known", photo_root, 0)
    save_batch(engine, [known], [verdict_for(known, DEPLOYED_MODEL, policy_version)])
    fresh = [event_for(f"fresh-{i}", photo_root, i) for i in range(3)]
    jsonl = tmp_path / "export.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps(fresh[0].to_message()),
                "{not json",
                json.dumps(known.to_message()),
                "",
                json.dumps({**fresh[1].to_message(), "declared_category": "pets.dog"}),
                json.dumps(fresh[2].to_message()),
            ]
        )
        + "\n"
    )
    out = run_backfill_cli(settings, "--from-file", str(jsonl))
    assert "queued 2, skipped 2, already current 1" in out.stdout, out.stdout
    assert "export.jsonl line 2: not JSON" in out.stderr, out.stderr
    assert "export.jsonl line 5: unknown category 'pets.dog'" in out.stderr, out.stderr
    assert sorted(queued_ids(broker, settings.queue_backfill)) == ["fresh-0", "fresh-2"]
    reasons = sorted(r["reason"] for r in list_rejected(engine, limit=0))
    assert reasons[0].startswith("backfill export.jsonl line 2: not JSON")
    assert reasons[1] == "backfill export.jsonl line 5: unknown category 'pets.dog'"

    csv_file = tmp_path / "export.csv"
    csv_file.write_text(
        "listing_id,declared_category,images,title,listing_version\n"
        f'csv-1,fashion.hat,{photo_root / "fashion.hat.jpg"},"a hat, red",1\n'
        f"csv-2,fashion.hat,,no photos,1\n"
        f'csv-3,food.fruit,"[""{photo_root / "food.fruit.jpg"}""]",fruit,2\n'
    )
    out = run_backfill_cli(settings, "--from-file", str(csv_file), "--no-progress")
    assert "queued 2, skipped 1, already current 0" in out.stdout, out.stdout
    assert "export.csv line 3: images: Field required" in out.stderr, out.stderr
    assert Counter(queued_ids(broker, settings.queue_backfill))["csv-3"] == 1


def test_a_worker_takes_new_listings_before_backfill_work(
    settings: Settings, engine: Engine, broker: redis.Redis, photo_root: Path, tmp_path: Path
) -> None:
    backlog = [event_for(f"backfill-{i:02d}", photo_root, i) for i in range(24)]
    fresh = [event_for(f"new-{i:02d}", photo_root, i) for i in range(24)]
    # Both queues hold work before the worker starts; backfill work was queued first.
    publish_bodies(
        [make_body(e, "backfill") for e in backlog], settings, queue=settings.queue_backfill
    )
    publish_bodies([make_body(e, "new") for e in fresh], settings, queue=settings.queue_new)
    with running_worker(settings, tmp_path / "worker.log", "--queues", "all") as worker:
        worker.wait_for(lambda: len(current_models(engine)) == 48, 120, "48 verdicts")
    rows = query_verdicts(engine, limit=0)
    ids = {
        source: [r["id"] for r in rows if r["source"] == source] for source in ("new", "backfill")
    }
    assert len(ids["new"]) == len(ids["backfill"]) == 24
    assert max(ids["new"]) < min(ids["backfill"]), "a backfill verdict was written before a new one"


def test_diff_by_policy_version(settings: Settings, engine: Engine, photo_root: Path) -> None:
    events = [event_for(f"p-{i}", photo_root, i) for i in range(6)]
    old = ["approve", "approve", "review", "reject", "approve", "review"]
    new = ["approve", "review", "approve", "reject", "reject", "review"]
    save_batch(
        engine, events, [verdict_for(e, "m", "p1", d) for e, d in zip(events, old, strict=True)]
    )
    save_batch(
        engine, events, [verdict_for(e, "m", "p2", d) for e, d in zip(events, new, strict=True)]
    )
    # A listing edited after p1: its version-2 verdict has no p1 counterpart and is ignored.
    edited = events[0].model_copy(update={"listing_version": 2})
    save_batch(engine, [edited], [verdict_for(edited, "m", "p2", "reject")])
    rows = diff_verdicts(engine, Side(policy_version="p1"), Side(policy_version="p2"))
    expected = Counter(
        (e.declared_category, a, b) for e, a, b in zip(events, old, new, strict=True)
    )
    assert {(r["category"], r["from"], r["to"]): r["listings"] for r in rows} == expected
    cli = subprocess.run(
        [sys.executable, "-m", "modq", "verdicts", "diff", "--from-policy", "p1",
         "--to-policy", "p2", "--json"],
        env=settings_env(settings), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [json.loads(line) for line in cli.stdout.splitlines()] == rows


def test_queue_size_counts_kombu_priority_lists(settings: Settings, broker: redis.Redis) -> None:
    app = create_app(settings)
    event = ListingEvent(listing_id="prio", declared_category="food.fruit", images=["x.jpg"])
    with app.producer_or_acquire() as producer:
        for priority in (None, 5, 9):
            app.send_task(
                TASK_NAME,
                kwargs=make_body(event, "backfill"),
                queue=settings.queue_backfill,
                priority=priority,
                producer=producer,
            )
    # kombu keeps prioritised messages in sibling lists: LLEN of the plain name sees one.
    assert broker.llen(settings.queue_backfill) == 1
    assert queue_size(settings, settings.queue_backfill) == 3
    sep = "\x06\x16"
    broker.delete(*(f"{settings.queue_backfill}{sep}{n}" for n in (3, 6, 9)))


def test_ids_file_selects_those_listings(
    settings: Settings, engine: Engine, broker: redis.Redis, photo_root: Path, tmp_path: Path
) -> None:
    events = seed(engine, photo_root, 12, model=None, policy="p")
    ids = tmp_path / "ids.txt"
    ids.write_text(
        f"# listings to check\n{events[7].listing_id}\n\nghost-1\n{events[2].listing_id}\n"
    )
    out = run_backfill_cli(settings, "--ids-file", str(ids), "--page-size", "2")
    assert "queued 2, skipped 1, already current 0" in out.stdout, out.stdout
    assert "listing ghost-1: not in the listings table" in out.stderr, out.stderr
    assert sorted(queued_ids(broker, settings.queue_backfill)) == sorted(
        [events[2].listing_id, events[7].listing_id]
    )
