"""Dead-letter queues: poison messages are parked with their reason; `modq dead list`,
`replay` and `drop` work on them, and dropping records the listing as rejected."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner

from modq.cli.main import main
from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent
from modq.ingest import probe
from modq.ingest.broker import dead_queue
from modq.ingest.probe import KEY
from modq.ingest.publish import park_dead
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.queries import list_rejected
from modq.store.stores import open_stores
from modq.store.verdicts import SqlVerdictStore
from modq.tasks.batch import run_batch
from tests.test_intake import queued
from tests.workerkit import settings_env


@pytest.fixture
def settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Settings]:
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(queue_new=f"dd-{suffix}.new", queue_backfill=f"dd-{suffix}.backfill")
    yield settings
    client = redis.Redis.from_url(settings.broker_url)
    client.delete(settings.queue_new, dead_queue(settings.queue_new))


def body(listing_id: str) -> dict[str, Any]:
    event = ListingEvent(listing_id=listing_id, declared_category="fashion.hat", images=["x.jpg"])
    return make_body(event, "new")


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(main, ["dead", *args], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def test_poison_messages_are_parked_and_recorded(settings: Settings) -> None:
    run = uuid.uuid4().hex[:6]
    engine = make_engine(settings.database_url)
    rt = SimpleNamespace(settings=settings, verdict_store=SqlVerdictStore(engine))
    # Started max_deliveries (3) times without an outcome: the next start parks it.
    task_id = f"{run}-task"
    redis.Redis.from_url(settings.broker_url).set(KEY.format(task_id), 3)
    run_batch([body(f"{run}-p")], cast(Runtime, rt), [task_id])
    assert probe.previous_starts(settings, [task_id]) == [0]  # it has its outcome
    parked = queued(settings, dead_queue(settings.queue_new))
    assert [p["event"]["listing_id"] for p in parked] == [f"{run}-p"]
    assert parked[0]["error"].startswith("dead_letter: its batch started 3 times")
    rows = [r for r in list_rejected(engine, limit=0) if r["listing_id"] == f"{run}-p"]
    assert rows and rows[0]["reason"].startswith("dead_letter:")
    engine.dispose()


def test_dead_list_replay_drop(settings: Settings) -> None:
    run = uuid.uuid4().hex[:6]
    park_dead([body(f"{run}-{i}") for i in range(3)], settings, "gave up after 5 attempts: x")
    listing = cli(settings, "list")
    rows = [line.split("\t") for line in listing.splitlines() if line.count("\t") == 3]
    assert [row[1] for row in rows] == [f"{run}-{i}" for i in range(3)]
    assert "gave up after 5 attempts" in listing

    assert cli(settings, "replay", f"{run}-1").strip() == "replayed 1"
    again = queued(settings, settings.queue_new)
    assert [b["event"]["listing_id"] for b in again] == [f"{run}-1"]
    assert again[0]["attempt"] == 0 and "error" not in again[0]

    assert cli(settings, "drop", "--all").strip() == "dropped 2"
    assert queued(settings, dead_queue(settings.queue_new)) == []
    engine = make_engine(settings.database_url)
    reasons = {
        r["listing_id"]: r["reason"]
        for r in list_rejected(engine, limit=0)
        if (r["listing_id"] or "").startswith(run)
    }
    engine.dispose()
    assert set(reasons) == {f"{run}-0", f"{run}-2"}
    assert reasons[f"{run}-0"].startswith(f"dropped from {dead_queue(settings.queue_new)}: gave")


class WorkerDied(BaseException):
    """Stands in for the process dying mid-message: not an Exception, so nothing catches it."""


def test_after_a_worker_died_each_message_runs_alone_and_only_the_killer_is_counted(
    make_settings: Callable[..., Settings], datasets_dir: Path
) -> None:
    """A redelivered batch (its messages started once, no outcome) runs one message at a time:
    the messages that finish are forgotten, the one running when the worker dies again gets
    one more start, and those not yet run get none. So its batch-mates are never parked."""
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        image_roots=[str(datasets_dir)],
        detectors=[],
        queue_new=f"dd-{suffix}.new",
        queue_backfill=f"dd-{suffix}.backfill",
    )
    photo = str(sorted((datasets_dir / "listings-v1" / "val" / "fashion.hat").glob("*.jpg"))[0])
    run = uuid.uuid4().hex[:6]

    def read(ref: str) -> bytes:
        if ref == "killer.jpg":
            raise WorkerDied
        return Path(ref).read_bytes()

    def event(name: str, image: str) -> dict[str, Any]:
        listing = ListingEvent(listing_id=f"{run}-{name}", declared_category="fashion.hat",
                               images=[image])  # fmt: skip
        return make_body(listing, "new")

    bodies = [event("a", photo), event("killer", "killer.jpg"), event("b", photo)]
    ids = [f"{run}-a", f"{run}-killer", f"{run}-b"]
    client = redis.Redis.from_url(settings.broker_url)
    for task_id in ids:  # the batch they were in started once, then its worker died
        client.set(KEY.format(task_id), 1)
    rt = Runtime.build(settings, stores=open_stores(settings.database_url), read=read)
    try:
        with pytest.raises(WorkerDied):
            run_batch(bodies, rt, ids)
        assert probe.previous_starts(settings, ids) == [0, 2, 1]
        # Redelivered again: "a" (done, forgotten) runs with the fresh ones; "killer" dies
        # alone once more; "b" still has not been started a second time.
        with pytest.raises(WorkerDied):
            run_batch(bodies, rt, ids)
        assert probe.previous_starts(settings, ids) == [0, 3, 1]
        # The next start would be the killer's fourth: it is parked, and "b" finally runs.
        run_batch(bodies, rt, ids)
        assert probe.previous_starts(settings, ids) == [0, 0, 0]
    finally:
        rt.close()
    parked = queued(settings, dead_queue(settings.queue_new))
    client.delete(dead_queue(settings.queue_new))
    assert [p["event"]["listing_id"] for p in parked] == [f"{run}-killer"]
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            decided = set(
                conn.execute(
                    sa.text("SELECT listing_id FROM verdicts WHERE listing_id LIKE :p"),
                    {"p": f"{run}-%"},
                ).scalars()
            )
    finally:
        engine.dispose()
    assert decided == {f"{run}-a", f"{run}-b"}


def test_suspects_of_two_batches_in_flight_run_one_at_a_time(
    make_settings: Callable[..., Settings], datasets_dir: Path
) -> None:
    """`modq worker -c 2`: two redelivered batches, each with a suspect. While one suspect
    runs, the other is neither started nor counted, so when the worker dies during the first
    (a killer), the second is not charged with that death."""
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        image_roots=[str(datasets_dir)], detectors=[], queue_new=f"dd-{suffix}.new",
        queue_backfill=f"dd-{suffix}.backfill",
    )  # fmt: skip
    photo = sorted((datasets_dir / "listings-v1" / "val" / "fashion.hat").glob("*.jpg"))[0]
    run = uuid.uuid4().hex[:6]
    killer_running, release, innocent_started = (threading.Event() for _ in range(3))

    def read(ref: str) -> bytes:
        if ref == "killer.jpg":
            killer_running.set()
            release.wait(30)
            raise WorkerDied
        innocent_started.set()
        return photo.read_bytes()

    def event(name: str, image: str) -> dict[str, Any]:
        listing = ListingEvent(listing_id=f"{run}-{name}", declared_category="fashion.hat",
                               images=[image])  # fmt: skip
        return make_body(listing, "new")

    ids = [f"{run}-killer", f"{run}-innocent"]
    client = redis.Redis.from_url(settings.broker_url)
    for task_id in ids:  # both were in flight when a worker died
        client.set(KEY.format(task_id), 1)
    rt = Runtime.build(settings, stores=open_stores(settings.database_url), read=read)
    died: list[BaseException] = []

    def first() -> None:
        try:
            run_batch([event("killer", "killer.jpg")], rt, ids[:1])
        except WorkerDied as exc:
            died.append(exc)

    try:
        a = threading.Thread(target=first)
        a.start()
        assert killer_running.wait(30)
        b = threading.Thread(target=run_batch, args=([event("innocent", str(photo))], rt, ids[1:]))
        b.start()
        # The other batch's suspect waits for the running one (a bounded wait for a start
        # that must not happen).
        assert not innocent_started.wait(2)
        assert probe.previous_starts(settings, ids) == [2, 1]  # the death is the killer's
        release.set()
        a.join(30)
        b.join(60)
        assert died and not a.is_alive() and not b.is_alive()
        assert probe.previous_starts(settings, ids) == [2, 0]  # the innocent ran, forgotten
    finally:
        release.set()
        rt.close()
        client.delete(*(KEY.format(i) for i in ids))
