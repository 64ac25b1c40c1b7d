"""Bank lookup speed: PDQ lookups per second against a large bank (default 1,000,000 hashes).

    .venv/bin/python bench/bench_bank.py [--size 1000000] [--queries 20000] [--batch 320]

The bank is random 256-bit hashes (real PDQ hashes of a million distinct photos are not at
hand; random hashes are the usual stand-in). Half the queries are copies of bank entries with
31 bits flipped (the worst case that must still match), half are unrelated; the benchmark
checks that every planted match is found and nothing else.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from modq.detectors.mih import HashIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=320, help="photos per worker batch")
    parser.add_argument("--distance", type=int, default=31)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    bank = rng.integers(0, 256, (args.size, 32), dtype=np.uint8)
    started = time.perf_counter()
    index = HashIndex(bank)
    build_s = time.perf_counter() - started

    half = args.queries // 2
    planted = rng.integers(0, args.size, half)
    bits = np.unpackbits(bank[planted], axis=1)
    for row in bits:
        row[rng.choice(256, args.distance, replace=False)] ^= 1
    queries = np.vstack([np.packbits(bits, axis=1), rng.integers(0, 256, (half, 32), np.uint8)])

    index.search(queries[:2], args.distance)  # JIT warm-up (cached on disk after the first run)
    started = time.perf_counter()
    found = [index.search(queries[i : i + args.batch], args.distance)
             for i in range(0, len(queries), args.batch)]  # fmt: skip
    batched_s = time.perf_counter() - started
    single_n = min(2000, len(queries))
    started = time.perf_counter()
    for i in range(single_n):
        index.search(queries[i : i + 1], args.distance)
    single_s = time.perf_counter() - started

    hits = {
        (int(q) + i * args.batch, int(j))
        for i, (qs, js, _) in enumerate(found)
        for q, j in zip(qs, js, strict=True)
    }
    expected = {(i, int(j)) for i, j in enumerate(planted)}
    missed, extra = len(expected - hits), len(hits - expected)
    print(f"bank size            {args.size:,} hashes (random), max distance {args.distance}")
    print(f"index build          {build_s:.1f} s")
    print(f"batched lookups/s    {len(queries) / batched_s:,.0f}  (batches of {args.batch})")
    print(f"single lookups/s     {single_n / single_s:,.0f}")
    print(
        f"planted matches      {len(expected) - missed}/{len(expected)} found, {extra} unexpected"
    )
    if missed or extra:
        raise SystemExit("index returned wrong results")


if __name__ == "__main__":
    main()
