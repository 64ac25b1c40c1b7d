"""The multi-index search alone, in memory or mapped from files, without PostgreSQL: where a
photo lookup's time goes (the exact search of the hash as uploaded vs the 7 dihedral variants),
how many candidates each touches, and the bytes per hash of each layout.

    .venv/bin/python bench/bench_mih.py --rows 1000000 [--layouts compact,wide] [--photos 20000]
        [--rounds 3] [--mmap] [--bits 22] [--width 3] [--recall]

The layouts are timed in turn, `--rounds` times, and the least disturbed round is reported
(per CPU-second: this machine is shared). The cheap probes' recall is measured per distance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modq.detectors import mih_wide  # noqa: E402
from modq.detectors.mih import LAYOUTS, HashIndex  # noqa: E402


def recall(index: HashIndex, hashes: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Per distance d: the share of indexed hashes with d random bits flipped that each cheap
    probe finds (the exact search finds all of them, by construction and by the tests)."""
    out: dict[str, Any] = {}
    picks = rng.integers(0, len(hashes), 2000)
    for d in (8, 12, 16, 20, 24, 28, 31):
        bits = np.unpackbits(hashes[picks], axis=1)
        for row in bits:
            row[rng.choice(256, d, replace=False)] ^= 1
        q = np.packbits(bits, axis=1)
        found: dict[str, float] = {}
        if index.layout == "wide":
            for flips in (0, 1):
                cap = 64 + 8 * len(q)
                res = [np.empty(cap, np.int64) for _ in range(3)]
                n = mih_wide.search(q, hashes, index.arrays(), 31, flips, res)
                pairs = set(zip(res[0][:n].tolist(), res[1][:n].tolist(), strict=True))
                hit = sum((i, int(j)) in pairs for i, j in enumerate(picks))
                found[f"flips{flips}"] = round(hit / len(q), 4)
        else:
            qs, js, _ = index.search(q, 31, radius=0)
            pairs = set(zip(qs.tolist(), js.tolist(), strict=True))
            hit = sum((i, int(j)) in pairs for i, j in enumerate(picks))
            found["radius0"] = round(hit / len(q), 4)
        out[str(d)] = found
    return out


def queries(rng: np.random.Generator, hashes: np.ndarray, n: int) -> np.ndarray:
    """(n, 8, 32): a quarter are indexed hashes with up to 31 bits flipped, the rest random."""
    out = rng.integers(0, 256, (n, 8, 32), dtype=np.uint8)
    picks = rng.integers(0, len(hashes), n // 4)
    bits = np.unpackbits(hashes[picks], axis=1)
    for row in bits:
        row[rng.choice(256, int(rng.integers(0, 32)), replace=False)] ^= 1
    out[: n // 4, 0] = np.packbits(bits, axis=1)
    return out


def timed(index: HashIndex, q: np.ndarray, batch: int, part: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, matches) of one part of the photo lookups."""
    found = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(q), batch):
        p = q[first : first + batch]
        if part == "exact":  # the others: the 7 variants
            found += len(index.search(p[:, 0], 31)[0])
        else:
            radius = 1 if part == "variants_flips1" else 0
            found += len(index.search(p[:, 1:].reshape(-1, 32), 31, radius=radius)[0])
    return time.perf_counter() - wall, time.process_time() - cpu, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--layouts", default="compact,wide", help="comma-separated, timed in turn")
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the layouts")
    parser.add_argument("--mmap", action="store_true", help="search the arrays mapped from files")
    parser.add_argument("--bits", type=int, help="wide layout: bits per key (default by rows)")
    parser.add_argument("--width", type=int, help="wide layout: bytes per id (3 or 4)")
    parser.add_argument("--recall", action="store_true", help="recall of the cheap probes")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 256, (args.rows, 32), dtype=np.uint8)
    q = queries(rng, hashes, args.photos)
    report: dict[str, Any] = {"rows": args.rows, "photos": args.photos}
    with tempfile.TemporaryDirectory(prefix="modq-mih-") as tmp:
        indexes = {}
        for layout in args.layouts.split(","):
            assert layout in LAYOUTS, layout
            started = time.perf_counter()
            if layout == "wide" and (args.bits or args.width):
                index = HashIndex.from_arrays(hashes, mih_wide.build(hashes, args.bits, args.width))
            else:
                index = HashIndex(hashes, layout=layout)
            arrays = index.arrays()
            report[layout] = {
                "build_s": round(time.perf_counter() - started, 2),
                "structure_bytes_per_hash": round(
                    sum(a.nbytes for a in arrays.values()) / args.rows, 1
                ),
            }  # fmt: skip
            if args.mmap:
                folder = Path(tmp) / layout
                folder.mkdir()
                np.save(folder / "hash.npy", hashes)
                for k, a in arrays.items():
                    np.save(folder / f"{k}.npy", a)
                mapped = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in arrays}
                index = HashIndex.from_arrays(np.load(folder / "hash.npy", mmap_mode="r"), mapped)
            indexes[layout] = index
        parts = ["exact", "variants", "variants_flips1"]
        for _ in range(args.rounds):
            for layout, index in indexes.items():
                for part in parts if layout == "wide" else parts[:2]:
                    timed(index, q[: args.batch], args.batch, part)  # compiled and warm
                    wall, cpu, found = timed(index, q, args.batch, part)
                    runs = report[layout].setdefault(part, [])
                    runs.append([round(wall / len(q) * 1e6, 1), round(cpu / len(q) * 1e6, 1)])
                    report[layout][part + "_matches"] = found
        for layout in indexes:
            r = report[layout]
            # The least disturbed round (this machine is shared): microseconds per photo.
            best = {p: min(c for _, c in r[p]) for p in parts if p in r}
            r["best_us_per_photo_cpu"] = best
            r["photo_lookups_per_cpu_s"] = round(1e6 / (best["exact"] + best["variants"]))
            if "variants_flips1" in best:
                r["photo_lookups_per_cpu_s_variants_radius1"] = round(
                    1e6 / (best["exact"] + best["variants_flips1"])
                )
                r["all_8_radius1_per_cpu_s"] = round(1e6 / (best["variants_flips1"] * 8 / 7))
                r["all_8_radius0_per_cpu_s"] = round(1e6 / (best["variants"] * 8 / 7))
            if args.recall:
                r["recall"] = recall(index=indexes[layout], hashes=hashes, rng=rng)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
