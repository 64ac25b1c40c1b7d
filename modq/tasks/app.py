"""The worker's Celery app: the one thin batch task and the process signals.

Only `modq worker` imports this module. Importing it reads the settings and declares the task,
so producers (`modq.ingest.publish`) never do: they publish by task name. The runtime (model,
detectors, stores) is built in the process that runs the batches, after any fork.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals

from modq.domain.envelope import summary
from modq.ingest.broker import TASK_NAME, create_app, declare_queues, drop_stale_bindings
from modq.pipeline.runtime import Runtime
from modq.settings import get_settings
from modq.store.stores import open_stores
from modq.tasks.batch import run_batch
from modq.tasks.full_batches import FullBatches

log = logging.getLogger(__name__)
settings = get_settings()
app = create_app(settings)

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process's runtime, created on first use: after any fork, never in a parent."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.build(settings, stores=open_stores(settings.database_url))
        return _runtime


@signals.worker_ready.connect
def _warm_up(**_: Any) -> None:
    # Threads pool: this is the process that will run the batches, so load the model now
    # rather than on the first listing.
    declare_queues(app, settings)
    drop_stale_bindings(app, settings)
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
    ids = [r.id for r in requests]
    started = time.monotonic()
    _task_events(requests, "task-started")
    run_batch([r.kwargs for r in requests], runtime(), ids)
    _task_events(requests, "task-succeeded", runtime=time.monotonic() - started)


def _task_events(requests: list[Any], kind: str, **fields: Any) -> None:
    """celery-batches sends no task events, so Flower would show no task: send them per
    message when the worker runs with task events on (`modq worker --task-events`)."""
    if not app.conf.worker_send_task_events or not requests:
        return
    try:
        with app.events.default_dispatcher(hostname=requests[0].hostname) as dispatcher:
            for r in requests:
                if kind == "task-started":  # Flower needs the name and arguments once
                    dispatcher.send("task-received", uuid=r.id, name=TASK_NAME, args="()",
                                    kwargs=summary(r.kwargs), retries=0, eta=None)  # fmt: skip
                dispatcher.send(kind, uuid=r.id, **fields)
    except Exception:  # monitoring must never fail a batch
        log.warning("could not send task events", exc_info=True)
