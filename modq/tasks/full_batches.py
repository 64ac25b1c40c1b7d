"""`FullBatches`: celery-batches' `Batches`, flushing a part-batch only when the pool can start it.

celery-batches' timer flushes whatever the buffer holds every `flush_interval`, even while the
pool is busy; those part-batches queue behind the running one, and as each ack lets in only as
many messages as it freed, the small sizes perpetuate (2-16 listings under a steady stream,
issue 14). Here a part-batch is flushed only when the pool can start it at once (timer, or the
moment a batch finishes); while the pool is busy the buffer keeps filling up to `flush_every`,
which flushes at once as before.

It also re-arms the flush timer after a broker reconnect. Kombu's event loop clears its timer
when the connection drops (`celery.worker.loops.asynloop`), taking celery-batches' repeating
flush with it, but `Batches` arms that timer only while its handle (`_tref`) is unset, which it
still was: after a reconnect only a full buffer flushed, and a lone listing waited for
`flush_every - 1` more (issue 23). Celery builds the task's strategy again on every consumer
start, so that is where the dead handle is dropped.

Tested against celery-batches 0.11 (pyproject.toml bounds it): this class relies on its private
`_do_flush`, `_buffer`, `_pending`, `_pool` and `_tref`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from celery_batches import Batches


class FullBatches(Batches):  # type: ignore[misc]
    """Batches that flush a part-batch only when the pool has room to start it at once.

    A full buffer (`flush_every`) is flushed as soon as it is full, as before. The timer's
    part-batches wait while the pool already holds `concurrency` batches; instead, the moment
    a batch finishes, whatever the buffer holds goes. Where the pool's results cannot be
    inspected (not the threads pool) this is plain `Batches`.
    """

    _tref: Any  # celery-batches' repeating flush timer entry, None while disarmed

    def __init__(self) -> None:
        super().__init__()
        self._in_flight: list[Any] = []  # pool results of flushed, unfinished batches
        self._flush_lock = threading.RLock()

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:
        # Runs on every consumer (re)start, on the consumer's thread, after the event loop
        # cleared its timer. Buffered messages from before the reconnect get a timer at once;
        # otherwise the next message arms one, as on the first start.
        handler = super().Strategy(task, app, consumer)
        with self._flush_lock:
            if self._tref is not None:
                self._tref.cancel()
                self._tref = None
            if self._buffer.qsize() or self._pending.qsize():
                self._tref = consumer.timer.call_repeatedly(self.flush_interval, self._do_flush)
        return handler

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
