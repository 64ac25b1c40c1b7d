"""Fault injection on real processes (short versions, in `make test`): a worker killed with
SIGKILL or stopped with SIGTERM mid-batch, PostgreSQL stopped for 20 s, Redis restarted
without persistence. Every accepted listing ends with a verdict or a recorded rejection:
lost 0, duplicated 0 (docs/reliability.md has the table and the soak).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import photos_of
from tests.faults.harness import Run
from tests.faults.services import PostgresCluster, poll
from tests.workerkit import child_pids, is_running

N = 300
PG_OUTAGE_S = 20.0


def _submit(run: Run, photo_root: Path, n: int = N) -> None:
    run.submit([photos_of(photo_root, i) for i in range(n)])


def _assert_clean(run: Run, recover_s: float, bound_s: float) -> None:
    outcome = run.outcome(recover_s)
    assert outcome.lost == 0, outcome
    assert outcome.duplicated == 0, outcome
    assert outcome.verdicts + outcome.rejected == outcome.submitted, outcome
    assert recover_s < bound_s, outcome


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_worker_killed_mid_batch(make_run: type[Run], photo_root: Path, sig: int) -> None:
    run = make_run(f"worker-{signal.Signals(sig).name.lower()}")
    worker = run.start_worker()
    _submit(run, photo_root)
    run.wait_for_progress(32)
    fault = time.monotonic()
    run.stop_worker(worker, sig)
    run.start_worker()
    # SIGKILL: the dead worker's messages come back after the visibility timeout (15 s here,
    # 60 s by default); SIGTERM: at once. A message caught between Redis's BRPOP and kombu's
    # record of it as unacknowledged is gone from the broker: `modq recover` re-sends it.
    run.wait_all(timeout=120, tick=run.recover_every(5, older_than_s=30))
    _assert_clean(run, time.monotonic() - fault, 60)


def test_a_worker_process_killed_under_the_supervisor(
    make_run: type[Run], photo_root: Path
) -> None:
    """`modq worker --processes 2` (the default on a 2-core machine): a child SIGKILLed
    mid-batch is started again, nothing is lost, and SIGTERM stops every child."""
    run = make_run("supervised")
    worker = run.start_worker("--processes", "2")
    pid = worker.proc.pid
    first = poll(lambda: len(kids := child_pids(pid)) == 2 and kids, 30, "two worker processes")
    worker.wait_for(lambda: worker.log().count("ready.") >= 2, 90, "both to be ready")
    _submit(run, photo_root)
    run.wait_for_progress(32)
    fault = time.monotonic()
    os.kill(first[0], signal.SIGKILL)
    restarted = poll(
        lambda: len(kids := child_pids(pid)) == 2 and first[0] not in kids and kids,
        30,
        "the supervisor to start the killed process again",
    )
    run.wait_all(timeout=120, tick=run.recover_every(5, older_than_s=30))
    _assert_clean(run, time.monotonic() - fault, 60)
    assert "died with signal SIGKILL" in worker.log()
    assert first[1] in restarted  # the other process was left alone
    run.stop_worker(worker, signal.SIGTERM)
    assert worker.proc.returncode == 0, worker.log()[-3000:]
    assert not any(is_running(p) for p in restarted)


def test_worker_processes_die_with_a_killed_supervisor(make_run: type[Run]) -> None:
    """No orphan keeps consuming without supervision: SIGKILL of the parent takes its
    children along (their messages are redelivered as for any dead worker)."""
    run = make_run("orphans")
    worker = run.start_worker("--processes", "2")
    kids = poll(lambda: len(k := child_pids(worker.proc.pid)) == 2 and k, 30, "two processes")
    run.stop_worker(worker, signal.SIGKILL)
    poll(lambda: not any(is_running(k) for k in kids), 30, "the children to exit")


def test_postgresql_stopped_mid_run(
    make_run: type[Run], cluster: PostgresCluster, photo_root: Path
) -> None:
    run = make_run("pg-down")
    run.start_worker()
    _submit(run, photo_root)
    run.wait_for_progress(32)
    cluster.stop()
    try:
        time.sleep(PG_OUTAGE_S)  # the outage itself, not a synchronisation
    finally:
        cluster.start()
    back = time.monotonic()
    run.wait_all(timeout=120, tick=run.recover_every(5, older_than_s=30))
    _assert_clean(run, time.monotonic() - back, 60)


def test_redis_restarted_mid_run(make_run: type[Run], photo_root: Path) -> None:
    run = make_run("redis-restart")
    run.start_worker()
    _submit(run, photo_root)
    run.wait_for_progress(32)
    run.redis.stop()  # no persistence: every queued message is gone
    run.redis.start()
    back = time.monotonic()
    run.wait_all(timeout=120, tick=run.recover_every(5, older_than_s=5))
    _assert_clean(run, time.monotonic() - back, 60)
