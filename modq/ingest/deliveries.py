"""How many times each message's batch has started: what finds a poison message.

A message whose worker dies while processing it (killed for memory, a crash in native code)
is redelivered by Redis after the visibility timeout, and would kill the next worker too.
Celery cannot count those deliveries (the redelivered message is the same message), so the
worker counts batch starts per task id in Redis (`modq:deliveries:<id>`, kept a day). Past
`max_deliveries` the message goes to `<queue>.dead` instead of into a batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import lru_cache

import redis

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
    if not settings.broker_url.startswith(("redis://", "rediss://")) or not ids:
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


def forget(settings: Settings, ids: Sequence[str | None]) -> None:
    """Drop the counters of messages that reached an outcome (best effort)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")) or not ids:
        return
    with contextlib.suppress(redis.RedisError):
        _client(settings.broker_url).delete(*(KEY.format(i) for i in ids))
