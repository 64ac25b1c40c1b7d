"""All Celery wiring: the app, its settings, and the one thin batch task.

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

import logging
import threading
from typing import TYPE_CHECKING, Any

from celery import Celery, signals
from celery_batches import Batches
from kombu.entity import Queue

from modq.settings import Settings, get_settings

if TYPE_CHECKING:
    from modq.pipeline.moderate import Runtime

log = logging.getLogger(__name__)

TASK_NAME = "modq.moderate"


def create_app(settings: Settings) -> Celery:
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


settings = get_settings()
app = create_app(settings)

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process's runtime, created on first use: after any fork, never in a parent."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            from modq.pipeline.moderate import Runtime

            _runtime = Runtime.build(settings)
        return _runtime


@signals.worker_ready.connect
def _warm_up(**_: Any) -> None:
    # Threads pool: this is the process that will run the batches, so load the model now
    # rather than on the first listing.
    runtime()


@signals.worker_shutdown.connect
def _shut_down(**_: Any) -> None:
    if _runtime is not None:
        _runtime.close()


@app.task(
    base=Batches,
    name=TASK_NAME,
    flush_every=settings.batch_size,
    flush_interval=settings.batch_interval_s,
    acks_late=True,
)
def moderate_batch(requests: list[Any]) -> None:
    from modq.tasks.batch import run_batch

    run_batch([(r.kwargs, r.delivery_info) for r in requests], runtime())
