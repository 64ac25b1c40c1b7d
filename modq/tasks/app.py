"""The worker's Celery app: the one thin batch task and the process signals.

Only `modq worker` imports this module. Importing it reads the settings and declares the task,
so producers (`modq.ingest.publish`) never do: they publish by task name. The runtime (model,
detectors, stores) is built in the process that runs the batches, after any fork.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import signals
from celery_batches import Batches

from modq.ingest.broker import TASK_NAME, create_app
from modq.pipeline.runtime import Runtime
from modq.settings import get_settings
from modq.store.stores import open_stores
from modq.tasks.batch import run_batch

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
    run_batch([r.kwargs for r in requests], runtime())
