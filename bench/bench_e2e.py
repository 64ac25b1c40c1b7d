"""End to end (Redis → `modq worker` → PostgreSQL) against in-process, same listings.

    .venv/bin/python bench/bench_e2e.py [--listings 400] [--rounds 1] [--concurrency 2]
        [--redis-url redis://127.0.0.1:6379/14] [--processes K] [--baseline /tmp/modq-base]

The same N listings built from listings-v1 val photos (`sample_events`, seed 7), default
settings and detectors, a throw-away PostgreSQL database:
- in-process: one `Runtime` (with the store, so the image banks and PDQ run as in the worker),
  `modq.pipeline.moderate.moderate` on batches of `batch_size` after a warm-up batch;
- end to end: the queue is filled first (on the given Redis database, flushed), then a real
  `modq worker` starts, as deployed: by default one process per core (`--processes K` picks
  K); the time runs from the first to the last verdict committed in PostgreSQL (verdicts of
  one batch share their transaction's timestamp, so each process's first batch is not
  counted: rate = (N - first K batches) / (last - first)). `--trickle R` starts the worker
  on an empty queue and publishes R listings/s instead (a stream, as in production).
Prints both rates, the ratio, how many of the worker's decisions (decision and reasons, read
back from PostgreSQL) are the in-process ones, and the sizes of the batches the worker
formed. `--baseline TREE` also runs that tree's pipeline in-process each round (as
`bench_throughput.py` does) and prints end to end / baseline and how many decisions match
the baseline's: the deployed worker against an older tree, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from bench_throughput import fresh_database, run_tree  # sibling: run as bench/bench_e2e.py

from modq.cli.demo import sample_events
from modq.domain.events import ListingEvent
from modq.ingest.publish import submit_many
from modq.pipeline.moderate import Runtime, moderate
from modq.settings import Settings, get_settings
from modq.store.stores import open_stores
from modq.tasks.supervisor import cores

Decisions = dict[str, list[Any]]  # listing id -> [decision, sorted reasons]


def in_process(events: list[ListingEvent], settings: Settings) -> tuple[float, Decisions]:
    # With the stores, as in the worker: image banks and PDQ run on this side too (without
    # them the in-process side skipped both and the ratio read 0.76-0.83 instead of ~0.95).
    rt = Runtime.build(settings, stores=open_stores(settings.database_url))
    try:
        size = settings.batch_size
        moderate(events[:size], rt)  # warm-up (these listings are moderated again below)
        decisions: Decisions = {}
        started = time.perf_counter()
        for start in range(0, len(events), size):
            for v in moderate(events[start : start + size], rt):
                decisions[v.listing_id] = [v.decision, sorted(r.text() for r in v.reasons)]
        return len(events) / (time.perf_counter() - started), decisions
    finally:
        rt.close()


def end_to_end(
    events: list[ListingEvent],
    settings: Settings,
    concurrency: int,
    log: Path,
    trickle: float,
    workers: int,
) -> tuple[float, Counter[int], Decisions]:
    env = {**os.environ, **settings.to_env()}
    redis.Redis.from_url(settings.broker_url).flushdb()
    if not trickle:
        submit_many(events, settings=settings)
    engine = sa.create_engine(settings.database_url)
    query = sa.text(
        "SELECT created_at, listing_id, decision, reasons FROM verdicts ORDER BY created_at"
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modq", "worker", "-p", str(workers), "-c", str(concurrency)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if trickle:  # start empty, then publish a steady stream above what the worker does
            while "ready." not in log.read_text(errors="replace"):
                time.sleep(0.2)
            for start in range(0, len(events), 4):
                submit_many(events[start : start + 4], settings=settings)
                time.sleep(4 / trickle)
        deadline = time.monotonic() + 60 + 2 * len(events)
        while True:
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            if len(rows) >= len(events):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker stopped or timed out:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        engine.dispose()
    groups = _groups(rows)
    batches = Counter(len(group) for _, group in groups)
    # Each process's first batch computed before its commit time, the clock's start: leave
    # out one first batch per process (K processes end K batches at about the same time).
    first, counted = groups[workers - 1][0], len(rows) - sum(len(g) for _, g in groups[:workers])
    rate = counted / (rows[-1][0] - first).total_seconds()
    return rate, batches, {row[1]: [row[2], sorted(row[3])] for row in rows}


def _groups(rows: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    out: dict[Any, list[Any]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return list(out.items())


def same(decided: Decisions, expected: Decisions, label: str, notes: list[str]) -> str:
    """How many of `decided` have the expected decision and reasons, as "k/n"; each difference
    goes to `notes`. Listings are matched on their number: `sample_events` names them
    `demo-<run>-<n>` and the run differs between the two sides."""
    by_number = {k.rsplit("-", 1)[1]: v for k, v in expected.items()}
    diffs = [k for k in sorted(decided) if decided[k] != by_number.get(k.rsplit("-", 1)[1])]
    notes += [f"    {k}: {label} {by_number.get(k.rsplit('-', 1)[1])} -> {decided[k]}"
              for k in diffs]  # fmt: skip
    return f"{len(decided) - len(diffs)}/{len(decided)}"


def regroup(events: list[ListingEvent], k: int, listings: int) -> list[ListingEvent]:
    """`listings` listings of exactly `k` photos each (photos reused in order as needed)."""
    refs = [(ref, e.declared_category) for e in events for ref in e.images]
    return [
        events[0].model_copy(
            update={
                "listing_id": f"k{k}-{n:04d}",
                "declared_category": refs[(n * k) % len(refs)][1],
                "images": [refs[(n * k + j) % len(refs)][0] for j in range(k)],
            }
        )
        for n in range(listings)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2, help="modq worker -c (its default)")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("MODQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="a Redis database this bench may flush",
    )
    parser.add_argument(
        "--trickle",
        type=float,
        default=0.0,
        help="instead of a pre-filled queue, publish this many listings/s while the worker runs",
    )
    parser.add_argument("--no-in-process", action="store_true", help="end to end only")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run this tree's pipeline in-process each round (bench_throughput.py's "
        "child, same listings) and print end to end / baseline",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=cores(),
        help="modq worker --processes (default: one per core, as the worker's 'auto')",
    )
    parser.add_argument(
        "--photos-per-listing", type=int, default=0, help="regroup the photos K per listing"
    )
    args = parser.parse_args()
    if args.baseline and args.photos_per_listing:
        parser.error("--baseline runs the default sample: leave out --photos-per-listing")
    base = get_settings()
    photos = base.datasets_dir / "listings-v1"
    lines, _ = sample_events(photos, args.listings, "e2e", bad_inputs=False)
    events = [ListingEvent.model_validate(json.loads(line)) for line in lines]
    if args.photos_per_listing:
        events = regroup(events, args.photos_per_listing, args.listings)
    n_photos = sum(len(e.images) for e in events)
    print(f"{len(events)} listings, {n_photos} photos, detectors {','.join(base.detectors)}")
    for r in range(args.rounds):
        settings = base.model_copy(
            update={
                "image_roots": [str(base.datasets_dir)],
                "broker_url": args.redis_url,
                "database_url": fresh_database("modq_bench_e2e"),
            }
        )
        local, expected = (float("nan"), {}) if args.no_in_process else in_process(events, settings)
        settings = settings.model_copy(update={"database_url": fresh_database("modq_bench_e2e")})
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "worker.log"
            e2e, batches, decided = end_to_end(
                events, settings, args.concurrency, log, args.trickle, args.processes
            )
        sizes = ", ".join(f"{size}×{count}" for size, count in sorted(batches.items()))
        versus, notes = "", []
        if args.baseline:
            url = fresh_database("modq_bench_e2e_baseline")
            old = run_tree(args.baseline, args.listings, {"MODQ_DATABASE_URL": url})
            rate = old["listings"] / old["seconds"]
            agreed = same(decided, old["decisions"], "baseline", notes)
            versus = f"; baseline in-process {rate:.2f} listings/s, end to end / baseline "
            versus += f"{e2e / rate:.2f}, decisions as the baseline's {agreed}"
        agree = ""
        if expected:
            agree = f", decisions as in-process {same(decided, expected, 'in-process', notes)}"
        print(
            f"round {r + 1}: in-process {local:.2f} listings/s, end to end {e2e:.2f} listings/s, "
            f"ratio {e2e / local:.2f}{agree}{versus}; worker batches (listings × count): {sizes}",
            *notes,
            sep="\n",
            flush=True,
        )


if __name__ == "__main__":
    main()
