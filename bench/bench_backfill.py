"""Backfill benchmarks: Redis memory stays bounded, and new listings stay fast during a backfill.

    # 1. Memory: 1,000,000 listings, a consumer that only drains the backfill queue.
    .venv/bin/python bench/bench_backfill.py memory --listings 1000000 --drain-rate 2000

    # 2. Latency of new listings (enqueue → verdict committed), without and during a backfill
    #    of 20,000 listings, with real workers, the shipped model and real photos.
    .venv/bin/python bench/bench_backfill.py latency --backfill 20000 --mode dedicated

Both create a throw-away database `modq_bench_<hex>` on the server of MODQ_DATABASE_URL (or
--server), fill `listings` with COPY, use queues of their own on MODQ_BROKER_URL, and drop the
database afterwards unless --keep. `memory` samples Redis `INFO memory` (used_memory) while the
real `modq backfill` command runs. `latency` submits new listings built from the validation
photos at a steady rate and polls PostgreSQL for their verdicts: the latency is the time from
the publish call to the moment the committed verdict is visible.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_store import fresh_database  # noqa: E402  (same folder: run as a script)

from modq.domain.events import ListingEvent  # noqa: E402
from modq.ingest.publish import queue_size, submit_many  # noqa: E402
from modq.settings import Settings, get_settings  # noqa: E402
from modq.store.database import make_engine, migrate  # noqa: E402

# --- shared -----------------------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `modq` child process build exactly `settings`."""
    return {**os.environ, **settings.to_env()}


def photos_by_category(folder: Path) -> dict[str, list[str]]:
    found = {
        d.name: sorted(str(p) for p in d.glob("*.jpg"))
        for d in sorted(folder.iterdir())
        if d.is_dir()
    }
    if not found:
        raise SystemExit(f"no photos under {folder} (set MODQ_DATASETS_DIR)")
    return found


def copy_listings(
    engine: Engine, n: int, photos: dict[str, list[str]], prefix: str, seed: int = 7
) -> None:
    """Insert `n` listings (1 to 3 real photo references each, no verdict) with COPY."""
    rng = random.Random(seed)
    categories = sorted(photos)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    columns = "listing_id, listing_version, declared_category, seller_id, title, images, created_at"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        chunk = 100_000
        for first in range(0, n, chunk):
            buf = io.StringIO()
            for i in range(first, min(n, first + chunk)):
                category = rng.choice(categories)
                refs = rng.sample(photos[category], rng.randint(1, 3))
                created = start + timedelta(seconds=30 * i)
                images = json.dumps(refs).replace('"', '""')
                buf.write(
                    f'{prefix}-{i:07d},1,{category},seller-{i % 9973},"listing {i}",'
                    f'"{images}",{created.isoformat()}\n'
                )
            buf.seek(0)
            cursor.copy_expert(f"COPY listings ({columns}) FROM STDIN WITH (FORMAT csv)", buf)
        raw.commit()
        cursor.execute("ANALYZE listings")
        raw.commit()
    finally:
        raw.close()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def model_path(arg: Path | None, tmp: Path) -> Path:
    """--model, else the shipped model, else the tests' tiny model (labels and version only
    matter for `memory`)."""
    if arg is not None:
        return arg
    shipped = get_settings().model_path
    if shipped.is_file():
        return shipped
    from tests.modelkit import build_tiny_model

    print(f"note: {shipped} not found; using the tests' tiny model")
    return build_tiny_model(tmp / "tiny.onnx")


def base_settings(args: argparse.Namespace, url: str, model: Path, run: str) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "model_path": model,
        "queue_new": f"bench-{run}.new",
        "queue_backfill": f"bench-{run}.backfill",
        "image_roots": [str(get_settings().datasets_dir)],
    }
    if getattr(args, "detectors", None) is not None:
        values["detectors"] = [d for d in args.detectors.split(",") if d]
    return get_settings().model_copy(update=values)


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


# --- memory -----------------------------------------------------------------------------------


def migrated_database(stack: ExitStack, args: argparse.Namespace) -> tuple[str, Engine]:
    """A throwaway database with the schema built by the migrations, closed with `stack`."""
    url = stack.enter_context(fresh_database(args.server, None, args.keep))
    migrate(url)
    engine = make_engine(url)
    stack.callback(engine.dispose)
    return url, engine


def bench_memory(args: argparse.Namespace) -> None:
    base = get_settings()
    photos = photos_by_category(base.datasets_dir / "listings-v1" / "train")
    run = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url, engine = migrated_database(stack, args)
        t0 = time.perf_counter()
        copy_listings(engine, args.listings, photos, "mem")
        print(f"filled {args.listings:,} listings with COPY in {time.perf_counter() - t0:.1f} s")
        settings = base_settings(args, url, model_path(args.model, tmp), run)
        queue = settings.queue_backfill
        client = redis.Redis.from_url(settings.broker_url)
        stack.callback(client.delete, queue)

        baseline = used_memory(client)
        cmd = [sys.executable, "-m", "modq", "backfill", "--page-size", str(args.page_size),
               "--high-water", str(args.high_water), "--no-progress"]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=settings_env(settings), stdout=subprocess.PIPE, text=True)
        peak_mem, peak_len, drained, sizes = baseline, 0, 0, []
        last_sample = last_print = 0.0
        credit = 0.0
        tick = time.perf_counter()
        while True:
            now = time.perf_counter()
            credit = min(credit + (now - tick) * args.drain_rate, args.drain_rate)  # ≤ 1 s burst
            tick = now
            if credit >= 1:
                popped = client.rpop(queue, int(credit)) or []
                drained += len(popped)
                credit -= len(popped)
                if len(sizes) < 1000:
                    sizes += [len(m) for m in popped[:10]]
            if now - last_sample >= 0.1:
                last_sample = now
                peak_mem = max(peak_mem, used_memory(client))
                peak_len = max(peak_len, int(client.llen(queue)))
            if now - last_print >= 10:
                last_print = now
                depth, memory = int(client.llen(queue)), used_memory(client)
                print(
                    f"  {now - started:6.0f} s  drained {drained:>9,}  queue {depth:>6,}  "
                    f"used_memory {mb(memory)}",
                    flush=True,
                )
            if proc.poll() is not None and client.llen(queue) == 0:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        out = proc.communicate()[0].strip()
        if proc.returncode != 0:
            raise SystemExit(f"modq backfill failed ({proc.returncode}): {out}")
        mean = statistics.mean(sizes) if sizes else 0.0
        print(f"modq backfill: {out}")
        rate = drained / elapsed
        print(f"listings queued and drained: {drained:,} in {elapsed:.0f} s ({rate:,.0f}/s)")
        print(f"high-water mark: {args.high_water:,} messages; longest queue seen: {peak_len:,}")
        print(f"message size: {mean:,.0f} bytes on average (kombu envelope + Celery body)")
        print(
            f"Redis used_memory: baseline {mb(baseline)}, peak {mb(peak_mem)}, "
            f"growth {mb(peak_mem - baseline)}"
        )
        print(
            f"bound: high-water × message size = {mb(args.high_water * mean)} of payload "
            f"(plus Redis list overhead); the growth does not depend on the {args.listings:,} rows"
        )
        engine.dispose()


# --- latency ----------------------------------------------------------------------------------


@contextmanager
def worker_process(settings: Settings, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modq", "worker", "--loglevel", "WARNING", "-p", "1", *extra],
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(
    engine: Engine, settings: Settings, photos: dict[str, list[str]], timeout: float
) -> None:
    """Workers are up when a probe listing on each queue has a verdict."""
    probes = []
    for source in ("new", "backfill"):
        category = sorted(photos)[0]
        event = ListingEvent(
            listing_id=f"probe-{source}-{uuid.uuid4().hex[:6]}",
            declared_category=category,
            images=[photos[category][0]],
        )
        submit_many([event], settings=settings, source=source)  # type: ignore[arg-type]
        probes.append(event.listing_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(seen(engine, probes)) == len(probes):
            return
        time.sleep(0.2)
    raise SystemExit("workers did not answer the probe listings in time (see the worker logs)")


def seen(engine: Engine, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT DISTINCT listing_id FROM verdicts WHERE listing_id = ANY(:ids)"),
            {"ids": ids},
        )
        return {r[0] for r in rows}


def backfill_verdicts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM verdicts WHERE source = 'backfill'")
            ).scalar_one()
        )


def trickle(
    engine: Engine,
    settings: Settings,
    photos: dict[str, list[str]],
    rng: random.Random,
    rate: float,
    duration: float | None,
    label: str,
    keep_going: Any = None,
    drain_timeout: float = 300,
) -> list[float]:
    """Submit new listings at `rate`/s for `duration` s (or while `keep_going()`), and return
    each one's latency from publish to committed verdict, polled every 20 ms."""
    categories = sorted(photos)
    sent: dict[str, float] = {}
    latencies: dict[str, float] = {}
    started = time.monotonic()
    next_at = started
    n = 0
    last_print = started
    stopped_at: float | None = None
    while True:
        now = time.monotonic()
        running = stopped_at is None and (
            (now - started < duration) if duration is not None else bool(keep_going())
        )
        if not running and stopped_at is None:
            stopped_at = now
        if running and now >= next_at:
            category = rng.choice(categories)
            event = ListingEvent(
                listing_id=f"{label}-{n:05d}-{uuid.uuid4().hex[:4]}",
                declared_category=category,
                images=rng.sample(photos[category], rng.randint(1, 3)),
                title=f"new listing {n}",
            )
            sent[event.listing_id] = time.monotonic()
            submit_many([event], settings=settings)
            n += 1
            next_at += 1 / rate
        pending = [i for i in sent if i not in latencies]
        t_poll = time.monotonic()
        for listing_id in seen(engine, pending):
            latencies[listing_id] = t_poll - sent[listing_id]
        if now - last_print >= 15:
            last_print = now
            done = sorted(latencies.values())
            p95 = done[int(0.95 * (len(done) - 1))] if done else float("nan")
            print(f"  {label}: {now - started:5.0f} s, {len(sent)} sent, {len(done)} done, "
                  f"p95 so far {p95 * 1000:.0f} ms", flush=True)  # fmt: skip
        if stopped_at is not None and not pending:
            break
        if stopped_at is not None and now - stopped_at > drain_timeout:
            raise SystemExit(f"{label}: {len(pending)} listings got no verdict in time")
        time.sleep(0.02)
    return sorted(latencies.values())


def describe(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    p = statistics.quantiles(ms, n=100, method="inclusive")
    return f"n={len(ms)}  p50 {p[49]:.0f} ms  p95 {p[94]:.0f} ms  max {max(ms):.0f} ms"


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def bench_latency(args: argparse.Namespace) -> None:
    base = get_settings()
    val = photos_by_category(base.datasets_dir / "listings-v1" / "val")
    train = photos_by_category(base.datasets_dir / "listings-v1" / "train")
    rng = random.Random(11)
    run = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url, engine = migrated_database(stack, args)
        copy_listings(engine, args.backfill, train, "old")
        model = model_path(args.model, tmp)
        settings = base_settings(args, url, model, run)
        client = redis.Redis.from_url(settings.broker_url)
        stack.callback(client.delete, settings.queue_new, settings.queue_backfill)
        logs = Path(args.logs or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        print(f"model {model}, detectors {settings.detectors}, mode {args.mode}, "
              f"{args.backfill:,} listings to backfill, {args.rate}/s new listings")  # fmt: skip
        if args.mode == "shared":
            stack.enter_context(
                worker_process(settings, logs / "worker-all.log", "--queues", "all")
            )
        else:
            stack.enter_context(
                worker_process(settings, logs / "worker-new.log", "--queues", "new")
            )
            stack.enter_context(
                worker_process(
                    settings, logs / "worker-backfill.log", "--queues", "backfill",
                    "--nice", str(args.nice),
                )
            )  # fmt: skip
        wait_ready(engine, settings, val, timeout=300)
        trickle(engine, settings, val, rng, args.rate, args.warmup_s, "warmup")

        print(f"phase 1: no backfill, {args.baseline_s:.0f} s")
        before = trickle(engine, settings, val, rng, args.rate, args.baseline_s, "base")

        cmd = [sys.executable, "-m", "modq", "backfill", "--no-progress"]
        if args.high_water:
            cmd += ["--high-water", str(args.high_water)]
        with (logs / "backfill.log").open("wb") as out:
            proc = subprocess.Popen(
                cmd, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT
            )
        stack.callback(lambda: proc.poll() is None and proc.kill())
        # The backfill is running once its first messages are queued and being worked on.
        deadline = time.monotonic() + 120
        while queue_size(settings, settings.queue_backfill) == 0 and backfill_verdicts(engine) < 2:
            if time.monotonic() > deadline or proc.poll() not in (None, 0):
                raise SystemExit("the backfill did not start: see backfill.log")
            time.sleep(0.1)
        done_before = backfill_verdicts(engine)
        t0 = time.monotonic()

        def backfill_running() -> bool:
            return backfill_verdicts(engine) < args.backfill

        window = None if args.during_s == 0 else args.during_s
        label = "during backfill" + ("" if window else " (until it finishes)")
        print(f"phase 2: {label}" + (f", {window:.0f} s" if window else ""))
        during = trickle(engine, settings, val, rng, args.rate, window, "during", backfill_running)
        elapsed = time.monotonic() - t0
        moderated = backfill_verdicts(engine) - done_before
        left = queue_size(settings, settings.queue_backfill)
        still = backfill_running()

        print()
        print(f"mode {args.mode}: new-listing latency, publish → verdict committed")
        print(f"  no backfill:     {describe(before)}")
        print(f"  during backfill: {describe(during)}")
        print(f"  p95 ratio: {p95(during) / p95(before):.2f}× (target ≤ 2×)")
        print(
            f"  backfill during the window: {moderated:,} listings re-moderated in {elapsed:.0f} s "
            f"({moderated / elapsed:.1f}/s), {left:,} waiting in the queue, "
            f"{'still running' if still else 'finished'} at the end"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=get_settings().database_url)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--model", type=Path, help="ONNX model (default: the shipped model)")
    sub = parser.add_subparsers(dest="which", required=True)

    mem = sub.add_parser("memory", help="Redis memory while backfilling a large table")
    mem.add_argument("--listings", type=int, default=1_000_000)
    mem.add_argument("--high-water", type=int, default=10_000)
    mem.add_argument("--page-size", type=int, default=500)
    mem.add_argument("--drain-rate", type=float, default=2000, help="messages/s the consumer takes")

    lat = sub.add_parser("latency", help="new-listing latency with and without a backfill")
    lat.add_argument("--backfill", type=int, default=20_000, help="listings to backfill")
    lat.add_argument("--rate", type=float, default=2.0, help="new listings per second")
    lat.add_argument("--warmup-s", type=float, default=15)
    lat.add_argument("--baseline-s", type=float, default=120)
    lat.add_argument(
        "--during-s", type=float, default=240, help="window during the backfill; 0: until it ends"
    )
    lat.add_argument("--mode", choices=["dedicated", "shared"], default="dedicated")
    lat.add_argument("--nice", type=int, default=19, help="nice of the dedicated backfill pool")
    lat.add_argument("--high-water", type=int, help="default MODQ_BACKFILL_HIGH_WATER")
    lat.add_argument("--detectors", help="comma list for MODQ_DETECTORS ('' for none)")
    lat.add_argument("--logs", help="folder for the worker and backfill logs")
    args = parser.parse_args()
    if args.which == "memory":
        bench_memory(args)
    else:
        bench_latency(args)


if __name__ == "__main__":
    main()
