"""Direct Redis calls a worker makes beside Celery, each bounded by a socket timeout: delivery
counters, the broker health check and queue depths for monitoring.

How many times each message has been started without an outcome is what finds a poison
message. A message whose worker dies while processing it (killed for memory, a crash in
native code) is redelivered by Redis after the visibility timeout, and would kill the next
worker too. Celery cannot count those deliveries (the redelivered message is the same
message), so the worker counts starts per task id in Redis (`modq:deliveries:<id>`, kept a
day) and forgets them at the outcome; `modq.tasks.batch` decides what a start is. Past
`max_deliveries` the message goes to `<queue>.dead` instead of being run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import lru_cache

import redis

from modq.errors import BrokerUnavailable
from modq.settings import Settings

log = logging.getLogger(__name__)

KEY = "modq:deliveries:{}"
TTL_S = 86_400


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def count_starts(settings: Settings, ids: Sequence[str | None]) -> list[int]:
    """Count one more start for each message id and return the counts (1 = first start).

    Other brokers, and a Redis that does not answer, count every start as the first: the
    check is a safeguard, never a reason to hold a batch.
    """
    if not _is_redis(settings) or not ids:
        return [1] * len(ids)
    try:
        with _client(settings.broker_url).pipeline(transaction=False) as pipe:
            for task_id in ids:
                key = KEY.format(task_id)
                pipe.incr(key)
                pipe.expire(key, TTL_S)
            replies = pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not count deliveries: %s", exc)
        return [1] * len(ids)
    return [int(n) for n in replies[::2]]


def previous_starts(settings: Settings, ids: Sequence[str]) -> list[int]:
    """How many times each message was started without reaching an outcome (0: never).

    A count above 0 on delivery means a worker died while the message was in flight. Other
    brokers, and a Redis that does not answer, report 0 for every message.
    """
    if not _is_redis(settings) or not ids:
        return [0] * len(ids)
    try:
        values = _client(settings.broker_url).mget([KEY.format(task_id) for task_id in ids])
    except redis.RedisError as exc:
        log.warning("could not read delivery counts: %s", exc)
        return [0] * len(ids)
    return [int(v) if v is not None else 0 for v in values]


def forget(settings: Settings, ids: Sequence[str | None]) -> None:
    """Drop the counters of messages that reached an outcome (best effort)."""
    if not _is_redis(settings) or not ids:
        return
    with contextlib.suppress(redis.RedisError):
        _client(settings.broker_url).delete(*(KEY.format(i) for i in ids))


def _is_redis(settings: Settings) -> bool:
    return settings.broker_url.startswith(("redis://", "rediss://"))


def broker_ping(settings: Settings) -> None:
    """Raise `BrokerUnavailable` unless the broker answers now (Redis: PING, 5 s at most)."""
    if not _is_redis(settings):
        return
    try:
        _client(settings.broker_url).ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"broker unavailable: {exc}") from exc


def queue_depths(settings: Settings, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting in each queue (Redis list lengths; modq publishes no priorities)."""
    if not _is_redis(settings):
        return {}
    try:
        with _client(settings.broker_url).pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            return {q: int(n) for q, n in zip(queues, pipe.execute(), strict=True)}
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"broker unavailable: {exc}") from exc
