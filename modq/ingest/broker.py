"""The broker connection as a Celery app: queues, routing and the settings both producers
and workers rely on. Building an app reads nothing from the environment and starts nothing;
the worker's own app (with its task and signals) is `modq.tasks.app`, which producers never
import.

Settings chosen on purpose:
- celery-batches buffers up to `batch_size` messages or `batch_interval_s` seconds and hands
  them to one call, so the model sees a batch across listings.
- `acks_late`: a message is acknowledged only after its verdict is committed; a worker that
  dies mid-batch leaves its messages to be redelivered (the upsert makes that harmless).
- prefetch = 2 × batch_size per batch in flight (`modq worker -c`): each runs while the next
  fills. celery-batches needs the window to exceed `flush_every` or it would only ever flush
  on the timer.
- Batches stay full under load: the worker's task uses `modq.tasks.full_batches.FullBatches`,
  which flushes a part-batch only when the pool can start it.
- Redis visibility timeout (`visibility_timeout_s`, default 60 s) sized to the batch deadline
  (`batch_deadline_s`): a message a dead worker held comes back within about a minute, and one
  a live worker holds (buffered, then its batch, at most two deadlines) is never redelivered.
- Each queue has its own direct exchange and routing key (both named after the queue), so a
  publisher using the advertised exchange/key reaches exactly one queue. `<queue>.dead` (the
  dead-letter queue) is declared the same way.
- `queue_order_strategy="priority"`: BRPOP lists `moderation.new` first, so a worker only
  takes backfill work when no new listing waits. Backfill messages it has already prefetched
  still run first, hence dedicated pools for big backfills (docs/backfill.md).
- Transient failures (database down) re-publish the batch's messages with exponential backoff,
  at most `max_retries` times; after that they go to the `<queue>.dead` queue, never lost.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from modq.settings import Settings

TASK_NAME = "modq.moderate"


def dead_queue(queue: str) -> str:
    """The dead-letter queue of `queue`."""
    return f"{queue}.dead"


def queue_named(name: str) -> Queue:
    """A queue bound to its own direct exchange with its own routing key (all named `name`)."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def queues_of(settings: Settings) -> list[Queue]:
    """Every queue modq uses, each on its own exchange and key."""
    names = [settings.queue_new, settings.queue_backfill]
    names += [dead_queue(name) for name in names]
    return [queue_named(name) for name in names]


def create_app(settings: Settings) -> Celery:
    """A Celery app for `settings`' broker, not set as current: several may coexist."""
    app = Celery("modq", broker=settings.broker_url, set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_s,
        # kombu scans for expired unacknowledged messages every interval × throttle seconds
        # (10 × 10 by default): that, not the visibility timeout, would bound redelivery.
        # One cheap ZRANGE every sixth of the timeout keeps redelivery under 1.2 × timeout.
        "unacked_restore_interval": max(1.0, settings.visibility_timeout_s / 6),
        "unacked_restore_throttle": 1,
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
        task_queues=queues_of(settings),
        task_default_queue=settings.queue_new,
        task_default_exchange=settings.queue_new,
        task_default_routing_key=settings.queue_new,
        task_routes={TASK_NAME: {"queue": settings.queue_new}},
    )
    return app


def declare_queues(app: Celery, settings: Settings) -> None:
    """Declare every queue and its binding (the worker does this when it starts)."""
    with app.connection_for_write() as conn:
        for queue in queues_of(settings):
            queue(conn.default_channel).declare()


def drop_stale_bindings(app: Celery, settings: Settings) -> int:
    """Remove the binding older modq versions made: the backfill queue bound to the new
    queue's exchange and key, which put every message published there in both queues.

    Redis keeps bindings in a set per exchange; other transports have nothing to clean.
    Returns how many bindings were removed.
    """
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return 0
    removed = 0
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        new, backfill = settings.queue_new, settings.queue_backfill
        member = channel.sep.join([new, "", backfill])
        for prefix in (channel.keyprefix_queue, channel.keyprefix_binding_permanent):
            removed += int(channel.client.srem(prefix % (new,), member))
    return removed
