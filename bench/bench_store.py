"""Write throughput of the store: save N verdicts in batches into a fresh database.

    .venv/bin/python bench/bench_store.py                      # PostgreSQL, 20,000 in batches of 64
    .venv/bin/python bench/bench_store.py --sqlite /tmp/bench.db

Creates a throw-away database `modq_bench_<hex>` on the server of MODQ_DATABASE_URL (or
--server), applies the migrations, saves realistic verdicts (3 photos, 15 category scores) with
their listing events, then saves a quarter of the batches again (redeliveries: the idempotent
path), and times the moderators' queries. The database is dropped afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from tqdm import tqdm

from modq.domain.events import ListingEvent
from modq.domain.verdicts import PhotoResult, Verdict
from modq.settings import get_settings
from modq.store.database import make_engine, migrate
from modq.store.queries import count_verdicts, query_verdicts
from modq.store.verdicts import save_batch

CATEGORIES = [
    "fashion.tshirt", "fashion.longsleeve", "fashion.shirt", "fashion.pants", "fashion.shorts",
    "fashion.skirt", "fashion.dress", "fashion.outerwear", "fashion.shoes", "fashion.hat",
    "electronics.phone", "electronics.laptop", "food.fruit", "food.vegetables", "food.packaged",
]  # fmt: skip


def make_item(rng: random.Random, i: int) -> tuple[ListingEvent, Verdict]:
    declared = rng.choice(CATEGORIES)
    refs = [f"s3://listing-photos/{i}/{k}.jpg" for k in range(3)]
    raw = [rng.random() for _ in CATEGORIES]
    total = sum(raw)
    scores = {c: r / total for c, r in zip(CATEGORIES, raw, strict=True)}
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:5]
    photos = [
        PhotoResult(
            index=k,
            ref=ref,
            top=top,
            declared_prob=scores[declared],
            detectors={"prohibited.firearm": rng.random() / 10, "prohibited.drugs": 0.01},
            fetch_ms=rng.uniform(5, 40),
            decode_ms=rng.uniform(2, 9),
        )
        for k, ref in enumerate(refs)
    ]
    event = ListingEvent(
        listing_id=f"bench-{i}",
        declared_category=declared,
        images=refs,
        title=f"listing {i}",
        seller_id=f"seller-{i % 997}",
    )
    verdict = Verdict(
        listing_id=event.listing_id,
        listing_version=1,
        declared_category=declared,
        decision=rng.choice(["approve", "approve", "approve", "review", "reject"]),
        reasons=rng.choice([[], ["category_mismatch"], ["prohibited.firearm"]]),
        suggested=top[:3],
        best_photo=0,
        scores=scores,
        photos=photos,
        model_version="bench-model-1",
        policy_version="bench-policy-1",
        timings={"fetch_ms": 30.0, "decode_ms": 8.0, "infer_ms": 4.0, "total_ms": 45.0},
    )
    return event, verdict


@contextmanager
def fresh_database(server: str, sqlite_path: Path | None, keep: bool) -> Iterator[str]:
    if sqlite_path is not None:
        sqlite_path.unlink(missing_ok=True)
        yield f"sqlite:///{sqlite_path}"
        return
    name = f"modq_bench_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(server).set(database="postgres")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="verdicts to save")
    parser.add_argument("--batch", type=int, default=64, help="verdicts per save_batch call")
    parser.add_argument("--server", default=get_settings().database_url)
    parser.add_argument("--sqlite", type=Path, help="benchmark a SQLite file instead")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()

    rng = random.Random(7)
    items = [make_item(rng, i) for i in range(args.n)]
    batches = [items[i : i + args.batch] for i in range(0, len(items), args.batch)]

    with fresh_database(args.server, args.sqlite, args.keep) as url:
        migrate(url)
        engine = make_engine(url)
        latencies = []
        start = time.perf_counter()
        for batch in tqdm(batches, desc="save_batch", unit="batch"):
            t0 = time.perf_counter()
            save_batch(engine, [e for e, _ in batch], [v for _, v in batch])
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        ms = sorted(x * 1000 for x in latencies)
        print(
            f"database: {make_url(url).get_backend_name()}  verdicts: {args.n}  batch: {args.batch}"
        )
        print(
            f"new verdicts:  {args.n / elapsed:,.0f} rows/s  ({elapsed:.2f} s; per batch "
            f"p50 {statistics.median(ms):.1f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms)"
        )

        again = batches[: max(1, len(batches) // 4)]
        start = time.perf_counter()
        for batch in again:
            save_batch(engine, [e for e, _ in batch], [v for _, v in batch])
        elapsed = time.perf_counter() - start
        redelivered = sum(len(b) for b in again)
        print(f"redeliveries:  {redelivered / elapsed:,.0f} rows/s  ({redelivered} verdicts)")
        assert count_verdicts(engine, current_only=False) == args.n, "redelivery made new rows"

        for label, kwargs in [
            ("review queue, newest 100", {"decision": "review"}),
            ("fashion.shoes, newest 100", {"category": "fashion.shoes"}),
            ("one listing's history", {"listing": "bench-42", "current_only": False}),
        ]:
            t0 = time.perf_counter()
            for _ in range(20):
                query_verdicts(engine, **kwargs)  # type: ignore[arg-type]
            print(f"query {label}: {(time.perf_counter() - t0) / 20 * 1000:.1f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
