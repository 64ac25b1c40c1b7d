"""A real `modq worker` process consuming from real Redis and writing to real PostgreSQL.

Bad photos, bad events, redelivered messages and a database that is down when the batch is
written: every submitted listing ends as a verdict or a recorded rejection with its reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent
from modq.domain.reasons import Reason
from modq.errors import StoreUnavailable
from modq.ingest.publish import publish_bodies, submit_many
from modq.settings import Settings
from modq.store.database import make_engine, migrate
from modq.store.queries import count_verdicts, list_rejected, query_verdicts
from tests.conftest import create_database, database_url, drop_database, rename_database
from tests.httpkit import PhotoServer, photo_server
from tests.photokit import bad_photos, colour_jpeg
from tests.workerkit import WorkerProcess, running_worker

MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("photos")


@pytest.fixture(scope="module")
def server() -> Iterator[PhotoServer]:
    with photo_server({"shoes.jpg": colour_jpeg("fashion.shoes")}) as srv:
        yield srv


@pytest.fixture(scope="module")
def settings(make_settings: Callable[..., Settings], photo_root: Path) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return make_settings(
        image_roots=[str(photo_root)],
        allowed_hosts=["127.0.0.1"],
        private_hosts=["127.0.0.1:*"],
        fetch_timeout_s=1.5,  # generous: a loaded CI machine answers slowly too
        fetch_retries=1,
        max_image_bytes=MAX_BYTES,
        batch_interval_s=0.2,
        queue_new=f"test-{suffix}.new",
        queue_backfill=f"test-{suffix}.backfill",
    )


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(settings, tmp_path_factory.mktemp("logs") / "worker.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Any:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


def verdicts_for(engine: Any, ids: list[str]) -> dict[str, dict[str, Any]] | None:
    found = {r["listing_id"]: r for r in query_verdicts(engine, limit=0) if r["listing_id"] in ids}
    return found if len(found) == len(ids) else None


def test_bad_photos_become_reasons_and_the_worker_keeps_going(
    worker: WorkerProcess, settings: Settings, engine: Any, photo_root: Path, server: PhotoServer
) -> None:
    good = photo_root / "good.jpg"
    good.write_bytes(colour_jpeg("fashion.shoes"))
    cases = {
        reason: str(path) for reason, path in bad_photos(photo_root / "bad", MAX_BYTES).items()
    }
    cases |= {
        "HTTP 404": server.url("/status/404"),
        "HTTP 500": server.url("/status/500"),
        "timed out": server.url("/stall"),
        "10.1.2.3": server.url("/redirect?to=http://10.1.2.3/x.jpg"),
        "169.254.169.254": server.url("/redirect?to=http://169.254.169.254/latest"),
    }
    run = uuid.uuid4().hex[:6]
    events = [
        ListingEvent(
            listing_id=f"bad-{run}-{i}", declared_category="fashion.shoes", images=[ref, str(good)]
        )
        for i, ref in enumerate(cases.values())
    ]
    events.append(ListingEvent(listing_id=f"http-{run}", declared_category="fashion.shoes",
                               images=[server.url("/f/shoes.jpg")]))  # fmt: skip
    submit_many(events, settings=settings)
    ids = [e.listing_id for e in events]
    rows = worker.wait_for(lambda: verdicts_for(engine, ids), 60, "verdicts for bad photos")
    for event, fragment in zip(events, cases, strict=False):
        row = rows[event.listing_id]
        assert row["decision"] == "review", row
        first = Reason.read(row["reasons"][0])
        assert (first.code, first.photo) == ("image_unreadable", 0), row["reasons"]
        assert fragment in first.detail, (fragment, row["reasons"])
        assert row["best_photo"] == 1
    assert rows[f"http-{run}"]["decision"] == "approve"
    assert server.hits["/status/500"] == 2  # one retry, then a per-photo error
    assert worker.alive()

    after = ListingEvent(
        listing_id=f"after-{run}", declared_category="fashion.shoes", images=[str(good)]
    )
    submit_many([after], settings=settings)
    row = worker.wait_for(lambda: verdicts_for(engine, [after.listing_id]), 30, "a later verdict")
    assert row[after.listing_id]["decision"] == "approve"


def test_redelivered_message_makes_one_verdict_row(
    worker: WorkerProcess, settings: Settings, engine: Any, photo_root: Path
) -> None:
    path = photo_root / "hat.jpg"
    path.write_bytes(colour_jpeg("fashion.hat"))
    event = ListingEvent(listing_id=f"dup-{uuid.uuid4().hex[:6]}", declared_category="fashion.hat",
                         images=[str(path)])  # fmt: skip
    sentinel = event.model_copy(update={"listing_id": event.listing_id + "-sentinel"})
    body = make_body(event, "new")
    publish_bodies([body, body, body], settings, queue=settings.queue_new)
    publish_bodies([make_body(sentinel, "new")], settings, queue=settings.queue_new)
    worker.wait_for(lambda: verdicts_for(engine, [sentinel.listing_id]), 30, "the sentinel verdict")
    history = query_verdicts(engine, listing=event.listing_id, limit=0, current_only=False)
    assert len(history) == 1
    assert count_verdicts(engine, listing=event.listing_id) == 1


def test_bad_events_reaching_the_worker_are_recorded(
    worker: WorkerProcess, settings: Settings, engine: Any, photo_root: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    good = str(photo_root / "good.jpg")
    bodies = [
        {"event": "{" + run, "source": "new"},
        {"event": {"listing_id": f"nocat-{run}", "images": [good]}, "source": "new"},
        {
            "event": {
                "listing_id": f"unknown-{run}",
                "declared_category": "pets.dog",
                "images": [good],
            }
        },
        {
            "event": {
                "listing_id": f"many-{run}",
                "declared_category": "fashion.hat",
                "images": [good] * 11,
            }
        },
    ]
    publish_bodies(bodies, settings, queue=settings.queue_new)

    def rejected() -> list[dict[str, Any]] | None:
        rows = [r for r in list_rejected(engine, limit=0) if run in r["payload"]]
        return rows if len(rows) == len(bodies) else None

    rows = worker.wait_for(rejected, 30, "rejected events")
    by_id = {r["listing_id"]: r for r in rows}
    assert all(r["stage"] == "worker" for r in rows)
    assert by_id[None]["reason"].startswith("not JSON")
    assert "declared_category: Field required" in by_id[f"nocat-{run}"]["reason"]
    assert by_id[f"unknown-{run}"]["reason"] == "unknown category 'pets.dog'"
    assert by_id[f"many-{run}"]["reason"] == "too many images: 11 (at most 10)"


def test_database_down_is_retried_until_it_comes_back(
    make_settings: Callable[..., Settings], photo_root: Path, tmp_path: Path
) -> None:
    url = database_url("modq_test_down")  # not created yet: every write fails
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        database_url=url,
        image_roots=[str(photo_root)],
        retry_backoff_s=0.5,
        max_retries=8,
        batch_interval_s=0.1,
        queue_new=f"test-{suffix}.new",
        queue_backfill=f"test-{suffix}.backfill",
    )
    path = photo_root / "fruit.jpg"
    path.write_bytes(colour_jpeg("food.fruit"))
    event = ListingEvent(listing_id="retry-1", declared_category="food.fruit", images=[str(path)])
    with running_worker(settings, tmp_path / "worker.log") as proc:
        # `submit` refuses while the database is down (it could not make the listing durable);
        # a message already on the broker (or published by an older modq) is retried.
        with pytest.raises(StoreUnavailable):
            submit_many([event], settings=settings)
        publish_bodies([make_body(event, "new")], settings, queue=settings.queue_new)
        proc.wait_for(lambda: "retrying in" in proc.log(), 30, "a retry to be scheduled")
        # Built under another name and renamed: the worker never sees a half-migrated database.
        staging = create_database("modq_test_staging")
        migrate(staging)
        rename_database(staging, url)
        try:
            engine = make_engine(url)
            rows = proc.wait_for(
                lambda: verdicts_for(engine, ["retry-1"]), 60, "the retried verdict"
            )
            assert rows["retry-1"]["decision"] == "approve"
            engine.dispose()
        finally:
            drop_database(url)
