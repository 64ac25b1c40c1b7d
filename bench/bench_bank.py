"""Bank lookup speed with dihedral matching: photos looked up per second against a large bank
(default 1,000,000 hashes).

    .venv/bin/python bench/bench_bank.py [--size 1000000] [--photos 20000] [--batch 320]
        [--dihedral query|index|off] [--repeat 3]

A photo lookup is what the worker does per photo (`modq.detectors.banks.BankMatcher`):
- `query` (shipped): the photo's hash, exact to distance 31, plus its 7 other dihedral variants
  (rotations/mirrors) with one probe per table (exact to 15);
- `index`: the alternative, the bank stores 8 variants per entry (8x the hashes) and the photo
  is looked up once, exactly (only possible for hashes added from photos: an imported hash list
  has no pixels to turn);
- `off`: the photo's hash only (before dihedral matching).

The bank is random 256-bit hashes (the usual stand-in for a million distinct photos). A quarter
of the photos are a bank entry with 31 bits flipped, a quarter have one of their variants
within 15 bits of a bank entry (`query` mode), the rest are unrelated; every planted match must
be found and nothing else. Variants 16-31 bits away are also planted and their recall printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import numpy.typing as npt

from modq.detectors.mih import HashIndex

U8 = npt.NDArray[np.uint8]


def flipped(rng: np.random.Generator, rows: U8, bits: int | npt.NDArray[np.int64]) -> U8:
    unpacked = np.unpackbits(rows, axis=1)
    for row, n in zip(unpacked, np.broadcast_to(bits, len(rows)), strict=True):
        row[rng.choice(256, int(n), replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def lookup(index: HashIndex, photos: U8, mode: str, distance: int) -> set[tuple[int, int]]:
    """(photo, bank row) pairs found for `photos` (n, 8, 32), as the worker looks them up."""
    qs, js, _ = index.search(photos[:, 0], distance)
    found = set(zip(qs.tolist(), js.tolist(), strict=True))
    if mode == "query":
        qs, js, _ = index.search(photos[:, 1:].reshape(-1, 32), distance, radius=0)
        found |= set(zip((qs // 7).tolist(), js.tolist(), strict=True))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=320, help="photos per worker batch")
    parser.add_argument("--distance", type=int, default=31)
    parser.add_argument("--dihedral", choices=["query", "index", "off"], default="query")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best is printed)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    bank = rng.integers(0, 256, (args.size, 32), dtype=np.uint8)
    rows = bank
    if args.dihedral == "index":  # 7 more (random) hashes per entry; row r is entry r % size
        rows = np.vstack([bank, rng.integers(0, 256, (7 * args.size, 32), dtype=np.uint8)])
    started = time.perf_counter()
    index = HashIndex(rows)
    build_s = time.perf_counter() - started

    n, q = args.photos, args.photos // 4
    photos = rng.integers(0, 256, (n, 8, 32), dtype=np.uint8)
    target = rng.integers(0, args.size, n)
    photos[:q, 0] = flipped(rng, bank[target[:q]], args.distance)
    expected = {(i, int(target[i])) for i in range(q)}
    far = np.arange(2 * q, 3 * q)  # variants 16..31 bits away: recall, not a guarantee
    if args.dihedral == "query":
        near = np.arange(q, 2 * q)
        variant = 1 + near % 7
        photos[near, variant] = flipped(rng, bank[target[near]], rng.integers(0, 16, q))
        expected |= {(int(i), int(target[i])) for i in near}
        photos[far, 1 + far % 7] = flipped(rng, bank[target[far]], rng.integers(16, 32, q))

    lookup(index, photos[:2], args.dihedral, args.distance)  # JIT warm-up (cached on disk)
    batched, single, cpu = [], [], []
    single_n = min(2000, n)
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        found: set[tuple[int, int]] = set()
        for i in range(0, n, args.batch):
            pairs = lookup(index, photos[i : i + args.batch], args.dihedral, args.distance)
            found |= {(p + i, j % args.size) for p, j in pairs}
        batched.append(n / (time.perf_counter() - started))
        cpu.append(n / (time.process_time() - cpu_started))
        started = time.perf_counter()
        for i in range(single_n):
            lookup(index, photos[i : i + 1], args.dihedral, args.distance)
        single.append(single_n / (time.perf_counter() - started))

    far_found = {(int(i), int(target[i])) for i in far} & found
    missed, extra = expected - found, found - expected - far_found
    print(f"bank size            {args.size:,} hashes (random), max distance {args.distance}")
    print(f"dihedral             {args.dihedral} ({len(index):,} hashes indexed)")
    print(f"index build          {build_s:.1f} s")
    print(f"photo lookups/s      batched (batches of {args.batch}): "
          + ", ".join(f"{x:,.0f}" for x in batched) + "; single: "
          + ", ".join(f"{x:,.0f}" for x in single))  # fmt: skip
    # Lookups per second of this process's CPU time: less hurt by other jobs on a shared machine.
    print("per CPU-second       batched: " + ", ".join(f"{x:,.0f}" for x in cpu))
    print(f"best                 {max(batched):,.0f} batched, {max(single):,.0f} single, "
          f"{max(cpu):,.0f} batched per CPU-second")  # fmt: skip
    print(f"planted matches      {len(expected) - len(missed)}/{len(expected)} found, "
          f"{len(extra)} unexpected")  # fmt: skip
    if args.dihedral == "query":
        print(f"variants 16-31 bits  {len(far_found)}/{q} found (single probe; not guaranteed)")
    if missed or extra:
        raise SystemExit("index returned wrong results")


if __name__ == "__main__":
    main()
