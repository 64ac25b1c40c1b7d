"""The dead-letter queues (`<queue>.dead`): list, replay and drop parked messages.

A message is parked when its retries are spent (`retry_later`) or when its worker died every
time it ran (`modq.tasks.batch`); its body keeps the reason in `error`. Replaying publishes it
to its queue again with its attempts reset; dropping records it as a rejected event (which
also closes its intake row, so `modq recover` leaves it alone) and removes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from modq.domain.envelope import listing_id_of, rejected, source_of
from modq.errors import UsageError
from modq.ingest.broker import dead_queue, queue_named
from modq.ingest.publish import _app_for, _broker, publish_bodies, queue_for, queue_size
from modq.settings import Settings

Which = Literal["new", "backfill", "all"]


@dataclass(frozen=True)
class Parked:
    """One parked message: the dead-letter queue it is in and its body."""

    queue: str
    body: dict[str, Any]

    @property
    def listing_id(self) -> str | None:
        return listing_id_of(self.body)

    @property
    def error(self) -> str:
        return str(self.body.get("error", ""))


def dead_queues(settings: Settings, which: Which = "all") -> list[str]:
    sources: list[Literal["new", "backfill"]] = ["new", "backfill"] if which == "all" else [which]
    return [dead_queue(queue_for(settings, source)) for source in sources]


def _kwargs(raw: bytes) -> dict[str, Any]:
    """The task kwargs (our body) of a message as kombu stores it in a Redis list."""
    message = json.loads(raw)
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    _args, kwargs, _embed = json.loads(body)
    return dict(kwargs)


def list_parked(settings: Settings, which: Which = "all", limit: int = 100) -> list[Parked]:
    """Parked messages, oldest first, without taking them off the queue (Redis brokers)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        raise UsageError("listing a dead-letter queue needs a Redis broker")
    out: list[Parked] = []
    app = _app_for(settings)
    with _broker("listing dead-letter queues"), app.connection_for_read() as conn:
        client: Any = conn.default_channel.client
        for queue in dead_queues(settings, which):
            raws = client.lrange(queue, -limit if limit > 0 else 0, -1)
            out += [Parked(queue, _kwargs(raw)) for raw in reversed(raws)]
    return out


@contextmanager
def _taking(settings: Settings, queue: str) -> Iterator[Callable[[], Any]]:
    """A `get()` that takes the next message of `queue` (acknowledged by the caller), over
    the messages there now only: ones put back while walking are not seen again."""
    count = queue_size(settings, queue)
    app = _app_for(settings)
    with _broker(f"reading {queue}"), app.connection_for_write() as conn:
        bound: Any = queue_named(queue)(conn.default_channel)
        left = [count]

        def get() -> Any:
            if left[0] <= 0:
                return None
            left[0] -= 1
            return bound.get(no_ack=False, accept=["json"])

        yield get


def _walk(
    settings: Settings,
    which: Which,
    chosen: Callable[[Parked], bool],
    act: Callable[[Parked], None],
) -> int:
    done = 0
    for queue in dead_queues(settings, which):
        with _taking(settings, queue) as get:
            while (message := get()) is not None:
                _args, kwargs, _embed = message.decode()
                parked = Parked(queue, dict(kwargs))
                if chosen(parked):
                    act(parked)
                    done += 1
                else:  # not asked for: back into the dead-letter queue
                    publish_bodies([parked.body], settings, queue=queue)
                message.ack()
    return done


def _matcher(listing_ids: set[str] | None) -> Callable[[Parked], bool]:
    return lambda p: listing_ids is None or p.listing_id in listing_ids


def replay(settings: Settings, listing_ids: set[str] | None = None, which: Which = "all") -> int:
    """Publish parked messages (all, or those of `listing_ids`) to their queue again."""

    def send(parked: Parked) -> None:
        body = {k: v for k, v in parked.body.items() if k != "error"}
        queue = queue_for(settings, source_of(body))
        publish_bodies([{**body, "attempt": 0}], settings, queue=queue)

    return _walk(settings, which, _matcher(listing_ids), send)


def drop(settings: Settings, listing_ids: set[str] | None = None, which: Which = "all") -> int:
    """Remove parked messages, recording each as a rejected event with its reason."""
    from modq.store.intake import shared_engine
    from modq.store.verdicts import record_rejected

    engine = shared_engine(settings.database_url)

    def record(parked: Parked) -> None:
        reason = f"dropped from {parked.queue}: {parked.error}"
        record_rejected(engine, [rejected(parked.body, reason)])

    return _walk(settings, which, _matcher(listing_ids), record)
