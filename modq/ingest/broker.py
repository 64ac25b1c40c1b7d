"""All Celery wiring: the app, its settings, and the one thin batch task.

Settings chosen on purpose:
- celery-batches buffers up to `batch_size` messages or `batch_interval_s` seconds and hands
  them to one call, so the model sees a batch across listings.
- `acks_late`: a message is acknowledged only after its verdict is committed; a worker that
  dies mid-batch leaves its messages to be redelivered (the upsert makes that harmless).
- prefetch = 2 × batch_size: one batch runs while the next fills. celery-batches needs the
  window to exceed `flush_every` or it would only ever flush on the timer.
- `FullBatches`: celery-batches' timer flushes whatever the buffer holds every
  `flush_interval`, even while the pool is busy; those part-batches queue behind the running
  one, and as each ack lets in only as many messages as it freed, the small sizes perpetuate
  (2-16 listings under a steady stream, issue 14). Now a part-batch is flushed only when the
  pool can start it at once (timer, or the moment a batch finishes); while the pool is busy
  the buffer keeps filling up to `flush_every`, which flushes at once as before.
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
from concurrent.futures import Future
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


class FullBatches(Batches):  # type: ignore[misc]
    """Batches that flush a part-batch only when the pool has room to start it at once.

    A full buffer (`flush_every`) is flushed as soon as it is full, as before. The timer's
    part-batches wait while the pool already holds `concurrency` batches; instead, the moment
    a batch finishes, whatever the buffer holds goes. Where the pool's results cannot be
    inspected (not the threads pool) this is plain `Batches`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._in_flight: list[Any] = []  # pool results of flushed, unfinished batches
        self._flush_lock = threading.RLock()

    def _pool_full(self) -> bool:
        self._in_flight = [r for r in self._in_flight if not _finished(r)]
        return len(self._in_flight) >= max(1, int(getattr(self._pool, "limit", 1) or 1))

    def _do_flush(self) -> None:
        # Called by the timer and on every flush_every-th message.
        with self._flush_lock:
            if self._buffer.qsize() < self.flush_every and self._pool_full():
                return
            super()._do_flush()

    def flush(self, requests: Any) -> Any:
        result = super().flush(requests)
        future = getattr(result, "f", None)
        if isinstance(future, Future):
            self._in_flight.append(result)
            future.add_done_callback(self._after_batch)
        return result

    def _after_batch(self, _: Future[Any]) -> None:
        # On the pool thread that ran the batch: start the next one without waiting for
        # the timer, unless the buffer is empty.
        with self._flush_lock:
            if self._buffer.qsize() and not self._pool_full():
                super()._do_flush()


def _finished(result: Any) -> bool:
    future = getattr(result, "f", None)
    return not isinstance(future, Future) or future.done()


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
    base=FullBatches,
    name=TASK_NAME,
    flush_every=settings.batch_size,
    flush_interval=settings.batch_interval_s,
    acks_late=True,
)
def moderate_batch(requests: list[Any]) -> None:
    from modq.tasks.batch import run_batch

    run_batch([(r.kwargs, r.delivery_info) for r in requests], runtime())
