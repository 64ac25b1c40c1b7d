"""The worker of tests/test_full_batches.py: modq's broker configuration (`create_app`) and one
`FullBatches` task that records each batch it runs in Redis, and can be held on a gate.

Run as `celery -A tests.full_batches_app worker -P threads -Q fb` with `MODQ_BROKER_URL` set.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from modq.ingest.broker import create_app
from modq.settings import get_settings
from modq.tasks.full_batches import FullBatches

QUEUE = "fb"
TASK = "tests.fb.record"
BATCHES = "fb:batches"  # one JSON list of message numbers per batch run, in order
GATE = "fb:gate"  # a batch holding a message with "hold" waits for an item here
FLUSH_EVERY = 4
FLUSH_INTERVAL_S = 0.2

settings = get_settings()
app = create_app(settings)


@app.task(
    base=FullBatches,
    name=TASK,
    flush_every=FLUSH_EVERY,
    flush_interval=FLUSH_INTERVAL_S,
    acks_late=True,
)
def record(requests: list[Any]) -> None:
    client = redis.Redis.from_url(settings.broker_url)
    client.rpush(BATCHES, json.dumps([r.kwargs["n"] for r in requests]))
    if any(r.kwargs.get("hold") for r in requests):
        client.blpop([GATE], timeout=60)
