"""Each queue has its own exchange and routing key: a message published to the advertised
exchange/key lands in exactly one queue, even on a broker an older modq had bound."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import redis

from modq.ingest.broker import create_app, dead_queue, declare_queues, drop_stale_bindings
from modq.settings import Settings


def test_each_queue_has_its_own_exchange(make_settings: Callable[..., Settings]) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(queue_new=f"rt-{suffix}.new", queue_backfill=f"rt-{suffix}.backfill")
    client = redis.Redis.from_url(settings.broker_url)
    new, backfill = settings.queue_new, settings.queue_backfill
    # What an older modq left behind: the backfill queue bound to the new queue's exchange/key.
    client.sadd(f"_kombu.binding.{new}", f"{new}\x06\x16\x06\x16{backfill}")
    app = create_app(settings)
    try:
        declare_queues(app, settings)
        assert drop_stale_bindings(app, settings) == 1
        with app.connection_for_write() as conn, conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=new, routing_key=new, serializer="json")
            producer.publish({"n": 2}, exchange=backfill, routing_key=backfill, serializer="json")
        assert client.llen(new) == 1
        assert client.llen(backfill) == 1
        bindings = {m.decode() for m in client.smembers(f"_kombu.binding.{dead_queue(new)}")}
        assert bindings == {f"{new}.dead\x06\x16\x06\x16{new}.dead"}
    finally:
        keys = [new, backfill, *client.keys(f"_kombu.binding*rt-{suffix}*")]
        client.delete(*keys)
        app.close()
