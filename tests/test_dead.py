"""Dead-letter queues: poison messages are parked with their reason; `modq dead list`,
`replay` and `drop` work on them, and dropping records the listing as rejected."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from click.testing import CliRunner

from modq.cli.main import main
from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent
from modq.ingest.broker import dead_queue
from modq.ingest.publish import park_dead
from modq.pipeline.runtime import Runtime
from modq.settings import Settings, get_settings
from modq.store.database import make_engine
from modq.store.queries import list_rejected
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
    get_settings.cache_clear()  # the CLI reads the environment once per process
    result = CliRunner().invoke(main, ["dead", *args], env=settings_env(settings))
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_poison_messages_are_parked_and_recorded(settings: Settings) -> None:
    run = uuid.uuid4().hex[:6]
    engine = make_engine(settings.database_url)
    rt = SimpleNamespace(settings=settings, verdict_store=SqlVerdictStore(engine))
    # Started more than max_deliveries (3) times: never run again.
    run_batch([body(f"{run}-p")], cast(Runtime, rt), starts=[4])
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
