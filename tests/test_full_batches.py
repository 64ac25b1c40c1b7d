"""`modq.tasks.full_batches.FullBatches` in a real Celery worker (threads pool, one batch at a
time) on a redis-server of its own: a part-batch runs after the flush interval, waits while
the pool is busy, and still runs after the broker connection was lost (issue 23: the flush
timer died with the connection, so only a full buffer flushed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modq.ingest.broker import create_app
from modq.settings import Settings
from tests import full_batches_app as fb
from tests.faults.services import RedisServer
from tests.workerkit import WorkerProcess, settings_env

# The flush interval plus a batch that only writes to Redis: far under a second. A worker
# without its flush timer never runs a lone message, whatever the bound.
BOUND_S = fb.FLUSH_INTERVAL_S + 4.8


World = tuple[RedisServer, WorkerProcess, "Producer"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = RedisServer(tmp_path)
    server.start()
    log_path = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "tests.full_batches_app", "worker",
               "-P", "threads", "-c", "1", "-Q", fb.QUEUE, "--without-mingle",
               "--without-gossip", "-l", "INFO"]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, env=settings_env(Settings(broker_url=server.url)), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = WorkerProcess(proc, log_path)
    try:
        worker.wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
        yield server, worker, Producer(server.url)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.stop()


class Producer:
    """The producer side, on this test's redis-server (a fresh connection after a fault)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app = create_app(Settings(broker_url=url))

    def send(self, *numbers: int, hold: bool = False) -> None:
        for n in numbers:
            self.app.send_task(fb.TASK, kwargs={"n": n, "hold": hold}, queue=fb.QUEUE)

    def reconnect(self) -> None:
        self.app = create_app(Settings(broker_url=self.url))


def _batches(server: RedisServer) -> list[list[int]]:
    client = redis.Redis.from_url(server.url)
    return [json.loads(b) for b in client.lrange(fb.BATCHES, 0, -1)]


def _wait_batches(server: RedisServer, worker: WorkerProcess, n: int) -> list[list[int]]:
    return worker.wait_for(
        lambda: len(b := _batches(server)) >= n and b, BOUND_S, f"{n} batches: {_batches(server)}"
    )


def test_a_part_batch_runs_after_the_interval(world: World) -> None:
    server, worker, producer = world
    producer.send(0)
    assert _wait_batches(server, worker, 1) == [[0]]
    producer.send(1, 2, 3, 4)  # a full buffer, or part-batches if they trickle in slowly
    worker.wait_for(
        lambda: sorted(n for b in _batches(server)[1:] for n in b) == [1, 2, 3, 4],
        BOUND_S,
        f"all four to run: {_batches(server)}",
    )


def test_part_batches_wait_for_the_busy_pool(world: World) -> None:
    server, worker, producer = world
    client = redis.Redis.from_url(server.url)
    producer.send(0, hold=True)
    _wait_batches(server, worker, 1)  # running, held on the gate: the pool is full
    producer.send(1, 2, 3)
    worker.wait_for(lambda: client.hlen("unacked") == 4, BOUND_S, "all four to be taken")
    client.rpush(fb.GATE, "go")
    # Timer ticks while the pool was busy flushed nothing: the three run as one batch.
    assert _wait_batches(server, worker, 2) == [[0], [1, 2, 3]]


@pytest.mark.parametrize("fault", ["connections-dropped", "redis-restarted"])
def test_a_part_batch_runs_after_a_reconnect(world: World, fault: str) -> None:
    server, worker, producer = world
    producer.send(0)
    _wait_batches(server, worker, 1)
    connected = worker.log().count("Connected to redis://")
    if fault == "redis-restarted":
        server.stop()
        server.start()
    else:
        # The consumer's connection, killed while it is blocked in BRPOP: the worker sees it
        # at once (a connection killed between commands may be re-opened by redis-py
        # without the consumer noticing).
        admin = redis.Redis.from_url(server.url)
        blocked = worker.wait_for(
            lambda: [c["id"] for c in admin.client_list() if c.get("cmd") == "brpop"],
            10,
            "the consumer to wait in BRPOP",
        )
        for client_id in blocked:
            admin.client_kill_filter(_id=client_id)
    worker.wait_for(
        lambda: worker.log().count("Connected to redis://") > connected, 60, "a reconnect"
    )
    producer.reconnect()
    before = len(_batches(server))  # 0 after a restart: the record went with Redis
    for n in (1, 2):  # one at a time, each alone in the buffer
        producer.send(n)
        assert _wait_batches(server, worker, before + 1)[-1] == [n]
        before += 1
