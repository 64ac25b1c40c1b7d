"""The per-host recent-photo index at scale: full build, incremental refresh, memory per host
and per process, lookups per second, and batch times with and without a refresh due.

    .venv/bin/python bench/bench_hash_index.py [--rows 1000000] [--layout fast|compact|wide]
        [--new 1000] [--photos 20000] [--batches 300] [--rounds 1] [--skip-batches]

A throw-away database (dropped at the end) gets `--rows` random hashes in `photo_hashes` by
COPY (seen over the last 29 days, 50,000 sellers), then:
1. full build: the host's writer (`SharedIndex.refresh`) loads the window and writes the
   segment files; the seconds, the bytes per row of the files, the writer's RSS growth;
2. a reader in another process maps the files and runs lookups over all of them: its RSS and
   PSS (the kernel's proportional share: what the host pays for that process);
3. incremental refreshes: `--new` rows saved through the store, then one writer refresh, 5x;
4. lookups per second with dihedral matching as `bench_bank.py` counts them (a photo: its
   hash exact to distance 31 plus 7 variants with one probe per table), batches of 320, also
   per CPU-second (this machine is shared); and the duplicate check's own lookup (the hash
   as uploaded only);
5. `BankMatcher.check` batch times (100 photos, banks empty) while another thread saves
   1,000 rows a second: with no refresh due, then with a refresh every second (`--rounds`
   times, alternating).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_throughput import ADMIN_URL, fresh_database  # noqa: E402
from modq.detectors.banks import BankConfig, BankMatcher, PhotoKey  # noqa: E402
from modq.detectors.hashing import PhotoHash  # noqa: E402
from modq.detectors.mih import LAYOUTS  # noqa: E402
from modq.detectors.photo_index import PdqKind, PhotoFeed, bytes_per_row  # noqa: E402
from modq.detectors.shared_index import SharedIndex, View  # noqa: E402
from modq.store.banks import SqlBankStore  # noqa: E402
from modq.store.database import make_engine  # noqa: E402
from modq.store.interface import PhotoHashRow  # noqa: E402

WINDOW_DAYS = 30.0


def memory(under: str | None = None) -> dict[str, int]:
    """RSS and PSS of this process in bytes, or of its mappings of files under `under`."""
    if under is None:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    else:
        lines, inside = [], False
        for line in Path("/proc/self/smaps").read_text().splitlines():
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and not line.endswith(":"):
                inside = len(head) >= 6 and head[5].startswith(under)
            elif inside:
                lines.append(line)
    out = {"rss": 0, "pss": 0}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower()] += int(rest.split()[0]) * 1024
    return out


def copy_rows(store: SqlBankStore, n: int, seed: int = 1) -> None:
    """`n` random photo hashes with seqs 1..n, by COPY (the text built a chunk at a time with
    numpy: a Python loop per row takes minutes at 10M)."""
    rng = np.random.default_rng(seed)
    now = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "s")
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        chunk = 200_000
        for first in range(0, n, chunk):
            m = min(n, first + chunk) - first
            hashes = rng.integers(0, 256, (m, 32), dtype=np.uint8).tobytes().hex()
            ages = rng.uniform(0, 29 * 86400, m).astype("timedelta64[s]")
            seen = np.datetime_as_string(now - ages, unit="s")
            i = np.arange(first, first + m)
            lines = [
                f"bench-{k},0,1,seller-{k % 50_000},\\\\x{hashes[64 * r : 64 * r + 64]},90,"
                f"{seen[r]}+00,{k + 1}\n"
                for r, k in enumerate(i.tolist())
            ]
            cursor.copy_expert(
                "COPY photo_hashes (listing_id, photo_index, listing_version, seller_id, hash,"
                " quality, seen_at, seq) FROM STDIN WITH (FORMAT text, DELIMITER ',')",
                io.StringIO("".join(lines)),
            )
        cursor.execute("UPDATE index_counters SET value = %s WHERE name = 'photo_hashes'", (n,))
        raw.commit()
        cursor.execute("ANALYZE photo_hashes")
        raw.commit()
    finally:
        raw.close()


def photos(rng: np.random.Generator, view: View, n: int) -> np.ndarray:
    """(n, 8, 32): a quarter are indexed rows with up to 31 bits flipped, the rest random."""
    out = rng.integers(0, 256, (n, 8, 32), dtype=np.uint8)
    seg = max(view.segments, key=len)
    picks = rng.integers(0, len(seg), n // 4)
    bits = np.unpackbits(np.asarray(seg.rows["hash"])[picks], axis=1)
    for row in bits:
        row[rng.choice(256, int(rng.integers(0, 32)), replace=False)] ^= 1
    out[: n // 4, 0] = np.packbits(bits, axis=1)
    return out


def lookups(
    view: View, queries: np.ndarray, batch: int, dihedral: bool = True, radius: int | None = None
) -> tuple[float, int]:
    """Photo lookups per second (hash radius 1, and unless `dihedral` is False its 7 variants
    radius 0) and the matches found. Without variants it is the duplicate check's lookup."""
    found = 0
    started = time.perf_counter()
    for first in range(0, len(queries), batch):
        part = queries[first : first + batch]
        for seg in view.segments:
            if seg.searcher is None:
                continue
            found += len(seg.searcher.search(part[:, 0], 31, radius)[0])
            if dihedral:
                seg.searcher.search(part[:, 1:].reshape(-1, 32), 31, radius=0)
    return len(queries) / (time.perf_counter() - started), found


READER = """
import json, pathlib, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
from bench.bench_hash_index import lookups, memory, photos
from modq.detectors.photo_index import PdqKind
from modq.detectors.shared_index import SharedIndex
root = pathlib.Path(sys.argv[1])
index = SharedIndex(root, PdqKind(sys.argv[2]), None, 30 * 86400.0)
started = time.perf_counter()
done = index.refresh()
mapped_s = time.perf_counter() - started
queries = photos(np.random.default_rng(5), index.view, 6400)
lookups(index.view, queries[:320], 320)  # compiled for read-only arrays
rate, _ = lookups(index.view, queries, 320)
for seg in index.view.segments:  # touch every page once, as a long-running worker will
    for arr in (*seg.rows.values(), *seg.structure.values()):
        np.asarray(arr).reshape(-1).view(np.uint8)[::4096].sum()
print("ready", flush=True)
sys.stdin.readline()  # measured once every reader has touched every page
print(json.dumps({"role": done.role, "action": done.action, "mapped_s": round(mapped_s, 4),
                  "index_mappings_mb": {k: round(v / 2**20, 1)
                                        for k, v in memory(str(root)).items()},
                  "lookups_per_s": round(rate)}), flush=True)
sys.stdin.readline()  # alive until every reader has measured
"""


def reader_processes(root: Path, layout: str, n: int) -> list[dict[str, Any]]:
    """`n` reader processes mapping the index at the same time, measured together."""
    command = [sys.executable, "-c", READER, str(root), layout, str(ROOT)]
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    lines = []
    for step in ("ready", "measure"):
        for p in procs:
            assert p.stdin is not None and p.stdout is not None
            line = p.stdout.readline().strip()
            assert step == "measure" or line == "ready", line
            lines.append(line)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
    for p in procs:
        p.wait()
    return [json.loads(line) for line in lines[n:]]


def new_rows(rng: np.random.Generator, n: int, tag: str) -> list[PhotoHashRow]:
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return [
        PhotoHashRow(f"{tag}-{i}", 0, 1, f"seller-{i % 977}", hashes[i].tobytes(), 90)
        for i in range(n)
    ]


def batch_times(matcher: BankMatcher, rng: np.random.Generator, batches: int) -> list[float]:
    times = []
    for b in range(batches):
        hashes = rng.integers(0, 256, (100, 32), dtype=np.uint8)
        keys = [PhotoKey(f"batch-{rng.integers(1 << 62)}", 1, 0, f"u-{b}") for _ in range(100)]
        started = time.perf_counter()
        matcher.check(keys, [PhotoHash(h.tobytes().hex(), 90) for h in hashes])
        times.append(time.perf_counter() - started)
    return times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--layout", choices=list(LAYOUTS), default="fast")
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--skip-batches", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the batch runs")
    args = parser.parse_args()
    name = f"modq_bench_hidx_{os.getpid()}"
    url = fresh_database(name)
    engine = make_engine(url)
    store = SqlBankStore(engine)
    report: dict[str, Any] = {"rows": args.rows, "layout": args.layout}
    try:
        started = time.perf_counter()
        copy_rows(store, args.rows)
        report["copy_s"] = round(time.perf_counter() - started, 1)
        with tempfile.TemporaryDirectory(prefix="modq-hidx-") as tmp:
            root = Path(tmp) / "photos"
            feed = PhotoFeed(store, WINDOW_DAYS, 50)
            index = SharedIndex(root, PdqKind(args.layout), feed, WINDOW_DAYS * 86400.0)
            before = memory()
            done = index.refresh()
            after = memory()
            report["full_build"] = {
                "action": done.action, "seconds": round(done.seconds, 2),
                "bytes_per_row": round(bytes_per_row(index.view), 1),
                "files_mb": round(sum(f.stat().st_size for f in root.rglob("*.npy")) / 2**20, 1),
                "writer_rss_growth_mb": round((after["rss"] - before["rss"]) / 2**20, 1),
            }  # fmt: skip
            print(json.dumps(report), flush=True)
            report["writer_index_mappings_mb"] = {
                k: round(v / 2**20, 1) for k, v in memory(str(root)).items()
            }
            # Two readers at once: the PSS of the index pages splits between the processes.
            report["reader_processes"] = reader_processes(root, args.layout, 2)
            rng = np.random.default_rng(3)
            refreshes = []
            for r in range(5):
                rows = new_rows(rng, args.new, f"new{r}")
                for first in range(0, len(rows), 100):
                    store.save_photo_hashes(rows[first : first + 100])
                done = index.refresh()
                refreshes.append((done.action, done.rows, round(done.seconds * 1000, 1)))
            report["incremental_ms"] = refreshes
            queries = photos(np.random.default_rng(4), index.view, args.photos)
            lookups(index.view, queries[:640], 320)  # compiled and warm
            rates = [lookups(index.view, queries, 320) for _ in range(3)]
            report["lookups_per_s"] = [round(r) for r, _ in rates]
            report["planted_found"] = rates[0][1]
            cpu = time.process_time()
            lookups(index.view, queries, 320)
            report["lookups_per_cpu_s"] = round(len(queries) / (time.process_time() - cpu))
            plain = [lookups(index.view, queries, 320, dihedral=False)[0] for _ in range(2)]
            report["duplicate_check_lookups_per_s"] = [round(r) for r in plain]
            if args.layout == "wide":  # the approximate duplicate check: exact to 21 bits
                near = [lookups(index.view, queries, 320, False, 1) for _ in range(2)]
                report["duplicate_check_radius1_lookups_per_s"] = [round(r) for r, _ in near]
                report["duplicate_check_radius1_found"] = near[0][1]
                report["duplicate_check_exact_found"] = lookups(index.view, queries, 320, False)[1]
            print(json.dumps(report), flush=True)
            index.close()
            if not args.skip_batches:
                report["batches"] = run_batches(
                    store, Path(tmp), args.layout, args.batches, args.rounds
                )
    finally:
        engine.dispose()
        from sqlalchemy import create_engine, text

        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps(report))


def run_batches(
    store: SqlBankStore, root: Path, layout: str, batches: int, rounds: int
) -> dict[str, Any]:
    """Batch times without and with a refresh due, the two alternating `rounds` times (the
    matcher adopts the built index)."""
    modes = [
        ("no_refresh_due", 3600.0, "normal"),
        ("refresh_every_1s", 1.0, "normal"),
        ("refresh_every_1s_builder_nice_19", 1.0, "low"),
    ]
    out: dict[str, Any] = {label: [] for label, _, _ in modes}
    rng = np.random.default_rng(6)
    for n, (label, refresh_s, priority) in enumerate(modes * rounds):
        config = BankConfig(31, 50, WINDOW_DAYS, refresh_s, layout)
        matcher = BankMatcher(store, config, root)
        # The builder process is spawned at the first incremental refresh, with this priority.
        matcher.photos.builder_priority = priority
        matcher.start()
        matcher.refresh()  # catch up with the rows the previous run saved: steady state below
        batch_times(matcher, rng, 20)  # warm
        stop = threading.Event()

        def insert(stop: threading.Event = stop, tag: str = f"{label}{n}") -> None:
            # The same write load in both runs: only the refreshes differ.
            r = np.random.default_rng(8)
            k = 0
            while not stop.is_set():
                store.save_photo_hashes(new_rows(r, 100, f"ins-{tag}-{k}"))
                k += 1
                stop.wait(0.1)

        feeder = threading.Thread(target=insert)
        feeder.start()
        refreshes_before = matcher.photos.view.generation
        times = batch_times(matcher, rng, batches)
        stop.set()
        feeder.join()
        out[label].append({
            "batches": batches, "p50_ms": round(pct(times, 50), 1),
            "p99_ms": round(pct(times, 99), 1), "max_ms": round(max(times) * 1000, 1),
            "refreshes_during": matcher.photos.view.generation - refreshes_before,
        })  # fmt: skip
        matcher.close()
    return out


if __name__ == "__main__":
    main()
