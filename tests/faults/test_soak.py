"""The soak (`make soak`, skipped otherwise): 20,000 listings (MODQ_SOAK_N) through one worker
(`modq worker --processes MODQ_SOAK_PROCESSES`, default 1), 5 % of them carrying a hostile
photo (tests/faults/hostile.py), submitted as a stream of MODQ_SOAK_RATE listings a second
(default 40, under what the worker sustains here) so that latency measures the worker, not a
backlog. Reports the counts, per-listing latency (submit → stored outcome, p50/p99/max), the
longest stall (seconds without a new outcome while work remained) and the peak RSS of the
largest worker process; fails if a listing took longer than `LATENCY_BOUND_S`."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.faults.conftest import photos_of
from tests.faults.harness import Run
from tests.faults.hostile import hostile_refs, hostile_server, huge_ref
from tests.faults.services import PostgresCluster

pytestmark = pytest.mark.skipif(
    os.environ.get("MODQ_SOAK") != "1", reason="the soak runs with `make soak` (MODQ_SOAK=1)"
)
N = int(os.environ.get("MODQ_SOAK_N", "20000"))
PROCESSES = os.environ.get("MODQ_SOAK_PROCESSES", "1")
HOSTILE_SHARE = 0.05
RATE = float(os.environ.get("MODQ_SOAK_RATE", "40"))
CHUNK = 20  # listings a submit call
RSS_BOUND_MB = 2048
# A listing may wait for one batch cut off by the batch deadline (a hostile photo server),
# then take one itself: two deadlines (5 s here) and the batch interval, plus slack for the
# shared machine. Without faults that is seconds; a stalled worker takes minutes.
LATENCY_BOUND_S = 2 * 5.0 + 10.0


def test_soak_with_hostile_photos(
    cluster: PostgresCluster, tiny_model: Path, photo_root: Path, tmp_path: Path
) -> None:
    rng = random.Random(12)
    run = Run("soak", cluster, tmp_path, tiny_model, photo_root, batch_size=32)
    try:
        with hostile_server() as base:
            bad = hostile_refs(photo_root / "hostile", base, run.redis.port)
            refs: list[list[str]] = []
            for i in range(N):
                photos = photos_of(photo_root, i)[: 1 + i % 2]
                if rng.random() < HOSTILE_SHARE:
                    photos.insert(rng.randrange(len(photos) + 1), rng.choice(bad))
                refs.append(photos)
            for i in range(3):  # a handful of 1 MB references
                refs[(i * 997) % N] = [huge_ref(), *photos_of(photo_root, i)[:1]]
            run.start_worker("--processes", PROCESSES)
            started = time.monotonic()
            stall = [0.0, run.done(), time.monotonic()]  # longest, last count, last change

            def watch() -> None:
                count, now = run.done(), time.monotonic()
                if count != stall[1] or count >= len(run.submitted):  # nothing waiting
                    stall[1], stall[2] = count, now
                stall[0] = max(stall[0], now - stall[2])

            for start in range(0, N, CHUNK):
                due = started + start / RATE  # pacing the load, not synchronisation
                while time.monotonic() < due:
                    watch()
                    time.sleep(min(0.1, max(0.0, due - time.monotonic())))
                run.submit(refs[start : start + CHUNK], chunk=CHUNK)
            run.wait_all(timeout=max(600, N / 5), tick=watch)
            elapsed = time.monotonic() - started
        outcome = run.outcome(elapsed)
        print(
            f"soak: {N / elapsed:.1f} listings/s offered {RATE:.0f}/s, longest stall "
            f"{stall[0]:.1f}s, latency p50 {outcome.latency_p50_s:.1f}s p99 "
            f"{outcome.latency_p99_s:.1f}s max {outcome.latency_max_s:.1f}s, intake rows "
            f"{run.intake_rows()}"
        )
        assert outcome.lost == 0 and outcome.duplicated == 0, outcome
        assert outcome.latency_max_s < LATENCY_BOUND_S, outcome
        assert outcome.peak_rss_mb < RSS_BOUND_MB, outcome
        assert stall[0] < 2 * run.settings.batch_deadline_s + 10, stall
    finally:
        run.close()
