"""One fault-injection run: its own database (on the faults' PostgreSQL cluster), its own
Redis, workers, listings submitted through `submit_many`, and the outcome counted in SQL.

Counts (docs/reliability.md): submitted; with a verdict; recorded as rejected (and no verdict);
lost (neither); duplicated (a second verdict or rejection row for the same listing version).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from modq.domain.events import ListingEvent
from modq.ingest.publish import submit_many
from modq.ingest.recover import recover
from modq.ingest.submit_file import submit_lines
from modq.settings import Settings
from modq.store.database import migrate
from tests.faults.services import (
    PostgresCluster,
    RedisServer,
    peak_rss_mb,
    poll,
    start_worker,
    stop_worker,
)
from tests.workerkit import WorkerProcess

CATEGORIES = ("fashion.hat", "fashion.shoes", "food.fruit")


@dataclass
class Outcome:
    scenario: str
    submitted: int
    verdicts: int
    rejected: int
    lost: int
    duplicated: int
    recover_s: float
    peak_rss_mb: float
    wall_s: float
    requeued: int  # re-published by `modq recover` (the intake table)
    latency_p50_s: float = 0.0  # submit → first stored outcome, per listing
    latency_p99_s: float = 0.0
    latency_max_s: float = 0.0
    processed: int = 0  # listings the workers ran (from their logs): > submitted = rework

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.submitted} | {self.verdicts} | {self.rejected} | "
            f"{self.lost} | {self.duplicated} | {self.requeued} | {self.recover_s:.1f} | "
            f"{self.peak_rss_mb:.0f} | {self.wall_s:.0f} | {self.latency_p50_s:.1f} / "
            f"{self.latency_p99_s:.1f} / {self.latency_max_s:.1f} | {self.processed} |"
        )


class Run:
    """A scenario's world. `events` are (listing id → event) submitted in `submit()`."""

    def __init__(
        self,
        name: str,
        cluster: PostgresCluster,
        tmp: Path,
        model: Path,
        photo_root: Path,
        **overrides: Any,
    ) -> None:
        self.name = name
        self.started = time.monotonic()
        self.tmp = tmp
        self.redis = RedisServer(tmp, appendonly=bool(overrides.pop("appendonly", False)))
        self.redis.start()
        url = cluster.create_database(f"faults_{name}_{uuid.uuid4().hex[:8]}")
        migrate(url)
        values: dict[str, Any] = {
            "broker_url": self.redis.url,
            "database_url": url,
            "model_path": model,
            "classifier_precision": "fp32",  # the tiny model has no int8 copy
            "data_dir": tmp / "data",
            "image_roots": [str(photo_root)],
            "allowed_hosts": ["127.0.0.1"],
            "private_hosts": ["127.0.0.1"],
            "detectors": ["banks"],
            "batch_size": 16,
            "batch_interval_s": 0.2,
            "batch_deadline_s": 5.0,
            "visibility_timeout_s": 15,
            "retry_backoff_s": 1.0,
            "max_retries": 12,
            "fetch_timeout_s": 1.0,
            "fetch_retries": 0,
        }
        values.update(overrides)
        self.settings = Settings(**values)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.workers: list[WorkerProcess] = []
        self.peak_mb = 0.0
        self.submitted: list[str] = []
        self.submitted_at: dict[str, float] = {}  # listing id → wall-clock time of its submit
        self.requeued = 0

    # --- processes ------------------------------------------------------------------------

    def start_worker(self, *args: str) -> WorkerProcess:
        worker = start_worker(self.settings, self.tmp / f"worker-{len(self.workers)}.log", *args)
        self.workers.append(worker)
        return worker

    def stop_worker(self, worker: WorkerProcess, sig: int = signal.SIGTERM) -> None:
        self.peak_mb = max(self.peak_mb, peak_rss_mb(worker))
        stop_worker(worker, sig)

    # --- listings -------------------------------------------------------------------------

    def submit(self, refs: Sequence[Sequence[str]], chunk: int = 200) -> None:
        """One listing per entry of `refs` (its photos), in chunks of `chunk`. An event that
        `submit` refuses (a 1 MB reference) goes through `modq submit`'s path, which records
        the refusal in rejected_events with the listing's id, as a marketplace's would be."""
        events, refused = [], []
        first = len(self.submitted)  # ids continue across calls (a trickle after a batch)
        ids = [f"{self.name}-{first + i}" for i in range(len(refs))]
        for i, photos in enumerate(refs):
            raw = {
                "listing_id": ids[i],
                "declared_category": CATEGORIES[(first + i) % len(CATEGORIES)],
                "images": list(photos),
            }
            try:
                events.append(ListingEvent.model_validate(raw))
            except ValueError:
                refused.append(json.dumps(raw))
        now = time.time()
        self.submitted_at.update((listing_id, now) for listing_id in ids)
        for start in range(0, len(events), chunk):
            for event in events[start : start + chunk]:  # the chunk's own submit time
                self.submitted_at[event.listing_id] = time.time()
            submit_many(events[start : start + chunk], settings=self.settings)
        if refused:
            report = submit_lines(refused, self.settings)
            assert len(report.rejected) == len(refused), report
        self.submitted += ids

    def intake_rows(self) -> tuple[int, int]:
        """(intake rows, open ones) of this run's listings."""
        with self.engine.connect() as conn:
            total, still_open = conn.execute(
                sa.text("SELECT count(*), count(*) FILTER (WHERE done_at IS NULL) FROM intake "
                        "WHERE listing_id LIKE :p"), {"p": f"{self.name}-%"},
            ).one()  # fmt: skip
        return int(total), int(still_open)

    def outcome_times(self) -> dict[str, float]:
        """Listing id → wall-clock time (epoch s) of its first stored verdict or rejection."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT listing_id, extract(epoch FROM min(t)) FROM ("
                    " SELECT listing_id, created_at AS t FROM verdicts WHERE listing_id LIKE :p"
                    " UNION ALL SELECT listing_id, received_at FROM rejected_events"
                    " WHERE listing_id LIKE :p) o GROUP BY listing_id"
                ),
                {"p": f"{self.name}-%"},
            ).all()
        return {str(lid): float(t) for lid, t in rows}

    def latencies(self) -> list[float]:
        """Seconds from submit to the first stored outcome, per listing that has one, sorted."""
        times = self.outcome_times()
        return sorted(
            max(0.0, times[lid] - at) for lid, at in self.submitted_at.items() if lid in times
        )

    def processed(self) -> int:
        """Listings the workers ran, summed from their `batch: N verdicts, M rejected` lines:
        above `submitted` by the work done twice (redeliveries, recovered copies)."""
        total = 0
        for worker in self.workers:
            for n, m in re.findall(r"batch: (\d+) verdicts, (\d+) rejected", worker.log()):
                total += int(n) + int(m)
        return total

    def counts(self) -> tuple[int, int, int]:
        """(listings with a verdict, listings only rejected, duplicate rows)."""
        like = f"{self.name}-%"
        with self.engine.connect() as conn:
            v_rows, v_ids = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT listing_id) FROM verdicts "
                        "WHERE listing_id LIKE :p"), {"p": like},
            ).one()  # fmt: skip
            r_rows, r_ids, r_only = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT listing_id), count(DISTINCT listing_id) "
                    "FILTER (WHERE listing_id NOT IN (SELECT listing_id FROM verdicts)) "
                    "FROM rejected_events WHERE listing_id LIKE :p"
                ),
                {"p": like},
            ).one()
        return int(v_ids), int(r_only), int(v_rows - v_ids + r_rows - r_ids)

    def done(self) -> int:
        verdicts, rejected, _ = self.counts()
        return verdicts + rejected

    def wait_for_progress(self, at_least: int, timeout: float = 120) -> None:
        poll(lambda: self.done() >= at_least, timeout, f"{at_least} outcomes", step=0.05)

    def recover_every(self, every_s: float, older_than_s: float) -> Callable[[], None]:
        """A tick that runs `modq recover` every `every_s`, as the deployment's loop does."""
        last = [time.monotonic()]

        def tick() -> None:
            if time.monotonic() - last[0] >= every_s:
                last[0] = time.monotonic()
                self.requeued += recover(self.settings, older_than_s=older_than_s).requeued

        return tick

    def wait_all(self, timeout: float, tick: Callable[[], None] | None = None) -> float:
        """Seconds until every submitted listing has an outcome (`tick` runs each poll)."""
        started = time.monotonic()

        def finished() -> bool:
            if tick is not None:
                tick()
            for worker in self.workers:
                self.peak_mb = max(self.peak_mb, peak_rss_mb(worker))
            return self.done() >= len(self.submitted)

        try:
            poll(finished, timeout, f"all {len(self.submitted)} outcomes", step=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self.counts()}; broker: {self.broker_state()}") from exc
        return time.monotonic() - started

    def broker_state(self) -> dict[str, Any]:
        client = redis.Redis.from_url(self.redis.url)
        s = self.settings
        return {
            "queued": client.llen(s.queue_new),
            "dead": client.llen(f"{s.queue_new}.dead"),
            "unacked": client.hlen("unacked"),
            "unacked_index": client.zcard("unacked_index"),
            "mutex_ttl": client.ttl("unacked_mutex"),
        }

    def outcome(self, recover_s: float) -> Outcome:
        verdicts, rejected, duplicated = self.counts()
        n = len(self.submitted)
        result = Outcome(
            self.name, n, verdicts, rejected, n - verdicts - rejected, duplicated,
            round(recover_s, 1), round(self.peak_mb, 1), round(time.monotonic() - self.started, 1),
            self.requeued, *_percentiles(self.latencies()), self.processed(),
        )  # fmt: skip
        print(result.row())
        report = os.environ.get("MODQ_FAULTS_REPORT")
        if report:
            with open(report, "a") as out:
                out.write(json.dumps(asdict(result)) + "\n")
        return result

    def close(self) -> None:
        for worker in self.workers:
            self.stop_worker(worker, signal.SIGTERM)
        self.engine.dispose()
        self.redis.stop()


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) of sorted `values`, rounded to 0.1 s; zeros when empty."""
    if not values:
        return 0.0, 0.0, 0.0
    at = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return round(at(0.5), 1), round(at(0.99), 1), round(values[-1], 1)
