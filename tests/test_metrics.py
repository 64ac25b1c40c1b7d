"""A worker started with --metrics-port serves Prometheus metrics and /healthz."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modq.domain.events import ListingEvent
from modq.ingest.broker import create_app
from modq.ingest.publish import submit_many
from modq.settings import Settings
from modq.tasks.health import HealthServer
from tests.conftest import database_url
from tests.photokit import colour_jpeg
from tests.workerkit import running_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_worker_serves_metrics_and_healthz(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        image_roots=[str(tmp_path)],
        detectors=["banks"],
        batch_interval_s=0.1,
        queue_new=f"mx-{suffix}.new",
        queue_backfill=f"mx-{suffix}.backfill",
    )
    good = tmp_path / "hat.jpg"
    good.write_bytes(colour_jpeg("fashion.hat"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_worker(settings, tmp_path / "w.log", "--metrics-port", str(port)) as proc:
        status, body = get(f"{base}/healthz")
        assert (status, json.loads(body)) == (200, {"broker": "ok", "database": "ok"})
        events = [
            ListingEvent(listing_id=f"mx-{suffix}-ok", declared_category="fashion.hat",
                         images=[str(good)]),
            ListingEvent(listing_id=f"mx-{suffix}-bad", declared_category="fashion.hat",
                         images=[str(tmp_path / "missing.jpg")]),
        ]  # fmt: skip
        submit_many(events, settings=settings)

        def scraped() -> str | None:
            text = get(f"{base}/metrics")[1]
            return (
                text if 'modq_listings_total{outcome="verdict",source="new"} 2.0' in text else None
            )

        text = proc.wait_for(scraped, 60, "metrics for two verdicts")
    for line in (
        'modq_photos_total{outcome="error"} 1.0',
        'modq_photos_total{outcome="ok"} 1.0',
        'modq_photo_errors_total{code="image_unreadable"} 1.0',
        'modq_decisions_total{decision="review",reason="image_unreadable"} 1.0',
        'modq_latency_seconds_count{since="accepted",source="new"} 2.0',
        'modq_stage_seconds_count{stage="fetch"} 2.0',
        "modq_batch_size_count",
        f'modq_queue_depth{{queue="mx-{suffix}.new.dead"}} 0.0',
        "modq_intake_open ",
        "process_resident_memory_bytes",
    ):
        assert line in text, line


def test_healthz_names_what_is_down(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        database_url=database_url("modq_test_absent"), broker_url="redis://127.0.0.1:1/0"
    )
    server = HealthServer(("127.0.0.1", 0), settings)
    try:
        checks = server.checks()
    finally:
        server.server_close()
        server.engine.dispose()
    # Names what is down, never how it is reached (tests/security/test_exposure.py).
    assert checks == {"broker": "unavailable", "database": "unavailable"}


def test_task_events_make_batches_visible_to_flower(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """celery-batches sends no task events; `--task-events` sends one set per message."""
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        image_roots=[str(tmp_path)],
        detectors=[],
        batch_interval_s=0.1,
        queue_new=f"ev-{suffix}.new",
        queue_backfill=f"ev-{suffix}.backfill",
    )
    good = tmp_path / "hat.jpg"
    good.write_bytes(colour_jpeg("fashion.hat"))
    seen: list[dict[str, Any]] = []
    app = create_app(settings)
    with (
        running_worker(settings, tmp_path / "w.log", "--task-events") as proc,
        app.connection_for_read() as conn,
    ):
        receiver = app.events.Receiver(conn, handlers={"*": seen.append})
        thread = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False), daemon=True
        )
        thread.start()
        n = [0]

        def succeeded() -> bool:
            # Events are broadcast: keep submitting until the receiver is subscribed.
            n[0] += 1
            event = ListingEvent(
                listing_id=f"ev-{suffix}-{n[0]}", declared_category="fashion.hat",
                images=[str(good)],
            )  # fmt: skip
            submit_many([event], settings=settings)
            time.sleep(0.5)  # pace the submissions; the wait itself is wait_for's deadline
            return any(e["type"] == "task-succeeded" for e in seen)

        proc.wait_for(succeeded, 60, "a task-succeeded event")
        receiver.should_stop = True
        thread.join(10)
    kinds = {e["type"] for e in seen}
    assert {"task-received", "task-started", "task-succeeded"} <= kinds
    received = [e for e in seen if e["type"] == "task-received"]
    assert received[0]["name"] == "modq.moderate"
    app.close()
