"""After a broker connection loss the worker still runs part-batches (issue 23).

Kombu's event loop clears its timer when the connection drops; celery-batches armed its flush
timer once and never again, so after a reconnect only a full buffer (`batch_size` messages)
flushed and a lone listing waited for the next `batch_size - 1`. Each scenario breaks the
broker while batches run and a part-batch is buffered, lets every listing finish (with
`modq recover` beside the worker where the broker lost messages), then submits single
listings one at a time, with no recovery running: each must get its outcome within one batch
interval plus one batch time (`TRICKLE_BOUND_S`), with one and with two worker processes.
Also here: Redis restarted in the middle of a `modq backfill`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from modq.domain.events import ListingEvent
from modq.store.database import make_engine
from modq.store.verdicts import save_batch
from tests.faults.conftest import photos_of
from tests.faults.harness import CATEGORIES, Run
from tests.faults.services import PostgresCluster, poll
from tests.workerkit import settings_env

N = 200  # 12 batches of 16 and a part-batch of 8
TRICKLE = 6
# A batch (two 1024×768 photos a listing, the tiny model) takes well under a second here; its
# photos may take up to the batch deadline (5 s). The bound is the interval plus that batch.
TRICKLE_BOUND_S = 0.2 + 5.0 + 3.0  # batch_interval_s + batch_deadline_s + storing, slack


def _ready(run: Run, processes: int) -> None:
    worker = run.workers[-1]
    worker.wait_for(lambda: worker.log().count("ready.") >= processes, 90, "every process")


def _connected(run: Run) -> int:
    return sum(w.log().count("Connected to redis://") for w in run.workers)


def _trickle(run: Run, photo_root: Path, n: int = TRICKLE) -> list[float]:
    """Submit `n` single listings one after the other; each one's seconds to its outcome."""
    waits = []
    for _ in range(n):
        i = len(run.submitted)
        run.submit([photos_of(photo_root, i)])
        started = time.monotonic()
        poll(
            lambda: run.done() >= len(run.submitted),
            TRICKLE_BOUND_S,
            f"listing {run.submitted[-1]} (submitted alone) to get its outcome; "
            f"broker: {run.broker_state()}",
            step=0.05,
        )
        waits.append(time.monotonic() - started)
    return waits


def _finish(run: Run, photo_root: Path, since: float) -> None:
    run.wait_all(timeout=120, tick=run.recover_every(2, older_than_s=5))
    waits = _trickle(run, photo_root)
    outcome = run.outcome(time.monotonic() - since)
    print(f"{run.name}: trickle waits {', '.join(f'{w:.2f}' for w in waits)} s")
    assert outcome.lost == 0 and outcome.duplicated == 0, outcome


@pytest.mark.parametrize(
    ("processes", "aof"), [(1, False), (2, False), (2, True)], ids=["1", "2", "2-aof"]
)
def test_redis_restarted_then_a_trickle(
    make_run: type[Run], photo_root: Path, processes: int, aof: bool
) -> None:
    """Redis started again while batches are in flight and a part-batch is buffered: killed
    without persistence (the queue and the unacked record are gone), or, as in issue 23 and
    docker-compose.yml, with AOF and stopped with SIGTERM (both kept: messages the workers
    held come back after the visibility timeout, a second copy beside `modq recover`'s)."""
    run = make_run(f"restart-trickle-{processes}{'-aof' if aof else ''}", appendonly=aof)
    run.start_worker("--processes", str(processes))
    _ready(run, processes)
    run.submit([photos_of(photo_root, i) for i in range(N)])
    run.wait_for_progress(40)
    before = _connected(run)
    run.redis.stop(signal.SIGTERM if aof else signal.SIGKILL)
    run.redis.start()
    poll(lambda: _connected(run) >= before + processes, 60, "every process to reconnect")
    _finish(run, photo_root, time.monotonic())


@pytest.mark.parametrize("processes", [1, 2])
def test_broker_connections_dropped_mid_batch(
    make_run: type[Run], photo_root: Path, processes: int
) -> None:
    """Every client connection to Redis dropped (`CLIENT KILL`) three times while batches run:
    the data stays; a consumer and the acknowledgements of running batches lose their
    connection ("Couldn't ack": redelivered after the visibility timeout). Which connections
    notice depends on timing (redis-py quietly reconnects a connection it finds dead before a
    command), so the test asserts the outcome, not a reconnect."""
    run = make_run(f"conn-drop-{processes}")
    run.start_worker("--processes", str(processes))
    _ready(run, processes)
    run.submit([photos_of(photo_root, i) for i in range(N)])
    admin = redis.Redis.from_url(run.redis.url)
    for progress in (40, 80, 120):
        run.wait_for_progress(progress)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= processes
    dropped = time.monotonic()
    _finish(run, photo_root, dropped)
    print(f"{run.name}: consumers reconnected {_connected(run) - processes} times")


def test_postgresql_outage_ending_with_a_part_batch(
    make_run: type[Run], cluster: PostgresCluster, photo_root: Path
) -> None:
    """PostgreSQL stopped while batches run (they are retried with backoff), then a trickle."""
    run = make_run("pg-part-batch")
    run.start_worker()
    run.submit([photos_of(photo_root, i) for i in range(N)])
    run.wait_for_progress(40)
    cluster.stop()
    try:
        time.sleep(5)  # the outage itself, not a synchronisation
    finally:
        cluster.start()
    _finish(run, photo_root, time.monotonic())


def test_redis_restarted_mid_backfill(make_run: type[Run], photo_root: Path) -> None:
    """`modq backfill` records each page in the intake table before publishing it, so what a
    Redis restart (no persistence) loses of the backfill queue, `modq recover` sends again,
    to the backfill queue: every selected listing gets its verdict, none waits on the new
    queue. The interrupted backfill command is simply run again (it resumes)."""
    run = make_run("backfill-restart", backfill_high_water=48)
    engine = make_engine(run.settings.database_url)
    stored = [
        ListingEvent(listing_id=f"{run.name}-{i}", declared_category=CATEGORIES[i % 3],
                     images=photos_of(photo_root, i))
        for i in range(N)
    ]  # fmt: skip
    save_batch(engine, stored, [])  # old listings, never moderated by this model
    engine.dispose()
    run.submitted += [e.listing_id for e in stored]
    run.start_worker()
    env = settings_env(run.settings)
    command = [sys.executable, "-m", "modq", "backfill", "--no-progress", "--page-size", "16"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run.wait_for_progress(40)
    run.redis.stop()
    run.redis.start()
    back = time.monotonic()
    first.wait(timeout=120)  # it either finished its pages or failed on the lost broker
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    new_queue = redis.Redis.from_url(run.redis.url)
    run.wait_all(timeout=180, tick=run.recover_every(2, older_than_s=5))
    outcome = run.outcome(time.monotonic() - back)
    assert outcome.lost == 0 and outcome.duplicated == 0, outcome
    assert new_queue.llen(run.settings.queue_new) == 0
    assert run.intake_rows() == (N, 0)  # every listing recorded, every row closed
