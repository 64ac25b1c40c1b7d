"""Durable from submit: `submit` records a listing in the intake table before publishing it,
the worker's store closes the row with the outcome, and `modq recover` re-publishes the rest."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from kombu import Connection

from modq.cli.main import main
from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent
from modq.domain.verdicts import RejectedEvent
from modq.ingest.publish import submit_many
from modq.ingest.recover import recover
from modq.ingest.submit_file import submit_lines
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.intake import Accepted, accept, prune
from modq.store.queries import list_rejected
from modq.store.schema import intake
from modq.store.verdicts import record_rejected, save_batch
from tests.photokit import colour_jpeg
from tests.workerkit import settings_env


@pytest.fixture
def settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Settings]:
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(queue_new=f"in-{suffix}.new", queue_backfill=f"in-{suffix}.backfill")
    yield settings
    redis.Redis.from_url(settings.broker_url).delete(settings.queue_new, settings.queue_backfill)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Any]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


def rows(engine: Any, prefix: str) -> dict[tuple[str, int], dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(intake).where(intake.c.listing_id.startswith(prefix)))
        return {(r.listing_id, r.listing_version): dict(r._mapping) for r in found}


def queued(settings: Settings, queue: str) -> list[dict[str, Any]]:
    raw = redis.Redis.from_url(settings.broker_url).lrange(queue, 0, -1)
    out = []
    for item in raw:
        message = json.loads(item)
        out.append(json.loads(base64.b64decode(message["body"]))[1])
    return out


def mine(settings: Settings, run: str) -> list[str]:
    ids = (b["event"]["listing_id"] for b in queued(settings, settings.queue_new))
    return sorted(i for i in ids if i.startswith(run))


def events(prefix: str, n: int, photo: Path, version: int = 1) -> list[ListingEvent]:
    return [
        ListingEvent(
            listing_id=f"{prefix}-{i}",
            declared_category="fashion.hat",
            images=[str(photo)],
            listing_version=version,
        )
        for i in range(n)
    ]


def test_submit_records_before_publishing_and_outcomes_close_rows(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    photo = tmp_path / "hat.jpg"
    photo.write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:6]
    batch = events(run, 3, photo)
    assert submit_many(batch, settings=settings) == 3
    found = rows(engine, run)
    assert sorted(found) == [(f"{run}-{i}", 1) for i in range(3)]
    assert all(r["done_at"] is None and r["source"] == "new" for r in found.values())
    body = found[(f"{run}-0", 1)]["body"]
    assert body["event"]["listing_id"] == f"{run}-0" and "accepted_at" in body
    published = sorted(b["event"]["listing_id"] for b in queued(settings, settings.queue_new))
    assert published == [e.listing_id for e in batch]

    # A newer version's outcome closes the older version too; a submit-stage refusal closes
    # nothing; a worker-stage rejection closes its listing's row.
    newer = batch[0].model_copy(update={"listing_version": 2})
    save_batch(engine, [newer], [], [])
    record_rejected(engine, [RejectedEvent(stage="submit", reason="x", payload="{}",
                                           listing_id=f"{run}-1", listing_version=1)])  # fmt: skip
    record_rejected(engine, [RejectedEvent(stage="worker", reason="x", payload="{}",
                                           listing_id=f"{run}-2", listing_version=1)])  # fmt: skip
    found = rows(engine, run)
    assert found[(f"{run}-0", 1)]["done_at"] is not None
    assert found[(f"{run}-1", 1)]["done_at"] is None
    assert found[(f"{run}-2", 1)]["done_at"] is not None


def test_recover_republishes_open_rows_once(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    photo = tmp_path / "hat.jpg"
    photo.write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:6]
    submit_many(events(run, 4, photo), settings=settings)
    save_batch(engine, events(run, 1, photo), [], [])  # the first has its outcome
    client = redis.Redis.from_url(settings.broker_url)
    client.delete(settings.queue_new)  # what a Redis restart without persistence does

    assert recover(settings, older_than_s=3600).requeued == 0  # still in the grace period
    report = recover(settings, older_than_s=0)
    assert report.requeued >= 3
    assert mine(settings, run) == [f"{run}-{i}" for i in (1, 2, 3)]
    # Their grace period restarted: an immediate second recovery sends nothing of them again.
    recover(settings, older_than_s=30)
    assert mine(settings, run) == [f"{run}-{i}" for i in (1, 2, 3)]

    result = CliRunner().invoke(main, ["recover", "--older-than", "0s"], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("re-queued ")


def test_submit_time_rejections_keep_the_listing_id(settings: Settings, engine: Any) -> None:
    run = uuid.uuid4().hex[:6]
    lines = [
        json.dumps({"listing_id": f"{run}-nocat", "images": ["a.jpg"]}),
        "{not json " + run,
    ]
    report = submit_lines(lines, settings)
    assert report.queued == 0 and len(report.rejected) == 2
    by_payload = {r["payload"]: r for r in list_rejected(engine, limit=0) if run in r["payload"]}
    assert by_payload[lines[0]]["listing_id"] == f"{run}-nocat"
    assert by_payload[lines[0]]["stage"] == "submit"
    assert by_payload[lines[1]]["listing_id"] is None


def test_closed_rows_are_pruned_in_bounded_chunks(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    photo = tmp_path / "hat.jpg"
    photo.write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:6]
    batch = events(run, 4, photo)
    submit_many(batch, settings=settings)
    save_batch(engine, batch[:3], [], [])  # three closed, the fourth still open
    ten_days_ago = sa.func.now() - sa.text("interval '10 days'")
    with engine.begin() as conn:  # as if they had been closed (and accepted) long ago
        conn.execute(
            sa.update(intake)
            .where(intake.c.listing_id.in_([e.listing_id for e in batch[1:]]))
            .values(done_at=sa.case((intake.c.done_at.is_(None), None), else_=ten_days_ago),
                    accepted_at=ten_days_ago)
        )  # fmt: skip
    assert prune(engine, keep_s=7 * 86_400, limit=1) == 1  # bounded: one of the two
    assert recover(settings, older_than_s=3600).pruned == 1  # the sidecar's pass: the other
    assert prune(engine, keep_s=7 * 86_400) == 0
    left = rows(engine, run)
    # Kept: the row closed just now, and the open one however old (recover re-sends it).
    assert sorted(left) == [(f"{run}-0", 1), (f"{run}-3", 1)]
    assert left[(f"{run}-3", 1)]["done_at"] is None


def test_backfill_rows_go_back_to_the_backfill_queue_only_when_it_is_empty(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    photo = tmp_path / "hat.jpg"
    photo.write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:6]
    batch = events(run, 3, photo)
    submit_many(batch[:1], settings=settings)  # a new listing still on its way
    save_batch(engine, batch[1:2], [], [])
    backfill = [Accepted(e.listing_id, 1, make_body(e, "backfill"), "backfill") for e in batch]
    accept(engine, backfill, keep_open=True)  # what `modq backfill` records for a page
    found = rows(engine, run)
    assert found[(f"{run}-0", 1)]["source"] == "new"  # open: left as it was
    assert found[(f"{run}-1", 1)]["source"] == "backfill"  # closed: opened again
    assert found[(f"{run}-1", 1)]["done_at"] is None
    assert found[(f"{run}-2", 1)]["source"] == "backfill"

    client = redis.Redis.from_url(settings.broker_url)
    client.delete(settings.queue_new, settings.queue_backfill)  # the broker lost everything
    report = recover(settings, older_than_s=0)
    assert report.backfill >= 2
    assert mine(settings, run) == [f"{run}-0"]  # nothing of the backfill on the new queue
    in_backfill = [b["event"]["listing_id"] for b in queued(settings, settings.queue_backfill)]
    assert sorted(i for i in in_backfill if i.startswith(run)) == [f"{run}-1", f"{run}-2"]
    # Queued backfill work is not sent again while it waits, whatever its age.
    assert recover(settings, older_than_s=0).backfill == 0
    assert client.llen(settings.queue_backfill) == len(in_backfill)


def test_recover_leaves_listings_waiting_behind_a_backlog_alone(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    """Open rows accepted after the oldest message still waiting in the new queue may be in
    that queue: however old, they are not sent again. Once the queue is lost, they are."""
    photo = tmp_path / "hat.jpg"
    photo.write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:6]
    submit_many(events(run, 3, photo), settings=settings)  # no worker: a backlog
    recover(settings, older_than_s=0)  # (older open rows of other tests do go)
    assert mine(settings, run) == [f"{run}-{i}" for i in range(3)]  # not doubled

    redis.Redis.from_url(settings.broker_url).delete(settings.queue_new)  # lost
    assert recover(settings, older_than_s=0).requeued >= 3
    assert mine(settings, run) == [f"{run}-{i}" for i in range(3)]
    # The recovered copies wait in the queue now, dated by their re-publication.
    recover(settings, older_than_s=0)
    assert mine(settings, run) == [f"{run}-{i}" for i in range(3)]


def test_recover_leaves_listings_a_worker_holds_alone(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    """A message taken and not acknowledged (kombu's `unacked` record) is running, or comes
    back after the visibility timeout: recovery sends no second copy of it."""
    photo = tmp_path / "hat.jpg"
    photo.write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:6]
    submit_many(events(run, 2, photo), settings=settings)
    with Connection(settings.broker_url) as conn:
        channel = conn.channel()
        taken = channel.basic_get(settings.queue_new, no_ack=False)  # as a worker takes one
        assert taken is not None
        held_id = taken.decode()[1]["event"]["listing_id"]
        redis.Redis.from_url(settings.broker_url).delete(settings.queue_new)  # the rest lost
        recover(settings, older_than_s=0)
        assert mine(settings, run) == sorted({f"{run}-0", f"{run}-1"} - {held_id})
        taken.ack()
