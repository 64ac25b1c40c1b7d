"""The broker connection as a Celery app: queues, routing and the settings both producers
and workers rely on. Building an app reads nothing from the environment and starts nothing;
the worker's own app (with its task and signals) is `modq.tasks.app`, which producers never
import.

Settings chosen on purpose:
- celery-batches buffers up to `batch_size` messages or `batch_interval_s` seconds and hands
  them to one call, so the model sees a batch across listings.
- `acks_late`: a message is acknowledged only after its verdict is committed; a worker that
  dies mid-batch leaves its messages to be redelivered (the upsert makes that harmless).
- prefetch = 2 × batch_size: one batch runs while the next fills. celery-batches needs the
  window to exceed `flush_every` or it would only ever flush on the timer.
- Redis visibility timeout (default 1 h) far above buffering + batch time (seconds), so a slow
  batch is never redelivered while it is still being processed.
- `queue_order_strategy="priority"`: BRPOP lists `moderation.new` first, so a worker only
  takes backfill work when no new listing waits. Backfill messages it has already prefetched
  still run first, hence dedicated pools for big backfills (docs/backfill.md).
- Transient failures (database down) re-publish the batch's messages with exponential backoff,
  at most `max_retries` times; after that they go to the `<queue>.dead` queue, never lost.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from modq.settings import Settings

TASK_NAME = "modq.moderate"


def create_app(settings: Settings) -> Celery:
    """A Celery app for `settings`' broker, not set as current: several may coexist."""
    app = Celery("modq", broker=settings.broker_url, set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_s,
        "queue_order_strategy": "priority",
    }
    if settings.broker_url.startswith("filesystem://"):
        # The embedded fallback broker: message files in the data dir, shared by processes.
        folder = settings.data_dir / "broker"
        control = folder / "control"  # kombu's default is ./control, wherever the command runs
        control.mkdir(parents=True, exist_ok=True)
        transport.update(
            data_folder_in=str(folder), data_folder_out=str(folder), control_folder=str(control)
        )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=2 * settings.batch_size,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        task_queues=[Queue(settings.queue_new), Queue(settings.queue_backfill)],
        task_default_queue=settings.queue_new,
        task_routes={TASK_NAME: {"queue": settings.queue_new}},
    )
    return app
