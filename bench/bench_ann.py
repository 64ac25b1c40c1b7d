"""Which in-process ANN library should hold the look-alike vectors (issue 25) where PostgreSQL
has no pgvector: build time, memory per vector, queries/s (one query at a time and batched,
one thread), p95 latency of a single query and recall@10 against exact search.

Imports only numpy and the ANN libraries, so it runs in a venv without modq's dependencies:

    nice -n 10 /tmp/ann-venv/bin/python bench/bench_ann.py --n 1000000 --dim 128 \
        --index faiss-hnsw-flat [--m 16] [--ef-construction 64] [--efs 16,32,64,128] \
        [--build-threads 2] [--out results.jsonl]

One index per process (`--index`), so the RSS delta is that index's alone; the data set and the
exact neighbours are cached in `--cache` (default /tmp/ann-bench-cache) and shared by the runs.

Data: `--centres` cluster centres (default 20,000) on the unit sphere, every vector a centre
plus Gaussian noise (within a cluster cosine ~0.75); 5% of the vectors are planted
near-duplicates of another vector (cosine ~0.97, the re-posted photo). Queries (default
2,000): half are near-duplicates of indexed vectors, half fresh draws from the clusters, so
recall@10 is measured both where one answer stands out and where ten are nearly tied.
Everything is L2-normalised; similarity is the inner product (= cosine).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

K = 10
INDEXES = (
    "faiss-hnsw-flat",
    "faiss-hnsw-sq8",
    "usearch-f32",
    "usearch-f16",
    "usearch-i8",
    "hnswlib",
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_parts() -> dict[str, int]:
    """Private (anonymous) and file-backed resident bytes: a mapped index's pages are shared
    by every process of the host, its private memory is paid per process."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(
    n: int, dim: int, centres: int, queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = normalise(rng.standard_normal((centres, dim), dtype=np.float32))
    # noise per coordinate so that |noise| ~ 0.85: cosine to the centre ~0.76
    spread = np.float32(0.85 / np.sqrt(dim))
    dup = np.float32(0.25 / np.sqrt(dim))
    xb = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = rng.integers(0, centres, e - s)
        xb[s:e] = c[lab] + spread * rng.standard_normal((e - s, dim), dtype=np.float32)
    normalise(xb)
    # planted near-duplicates: 5% of rows replaced by an edited copy of another row
    nd = n // 20
    dst = rng.choice(n, nd, replace=False)
    src = rng.integers(0, n, nd)
    xb[dst] = normalise(xb[src] + dup * rng.standard_normal((nd, dim), dtype=np.float32))
    half = queries // 2
    q1 = xb[rng.integers(0, n, half)] + dup * rng.standard_normal((half, dim), dtype=np.float32)
    lab = rng.integers(0, centres, queries - half)
    q2 = c[lab] + spread * rng.standard_normal((queries - half, dim), dtype=np.float32)
    xq = normalise(np.vstack([q1, q2]).astype(np.float32))
    return xb, xq


def exact(xb: np.ndarray, xq: np.ndarray) -> np.ndarray:
    # plain numpy matmul in blocks: the reference must not depend on any of the candidates
    best = np.empty((len(xq), K), dtype=np.int64)
    for s in range(0, len(xq), 250):
        sims = xq[s : s + 250] @ xb.T
        part = np.argpartition(-sims, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        best[s : s + 250] = np.take_along_axis(part, order, axis=1)
    return best


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"n{args.n}_d{args.dim}_c{args.centres}_q{args.queries}_s{args.seed}"
    fb, fq, fg = (cache / f"{tag}.{x}.npy" for x in ("base", "query", "gt"))
    if not fg.exists():
        t = time.perf_counter()
        xb, xq = make_data(args.n, args.dim, args.centres, args.queries, args.seed)
        gt = exact(xb, xq)
        np.save(fb, xb)
        np.save(fq, xq)
        np.save(fg, gt)
        print(f"data + exact neighbours: {time.perf_counter() - t:.1f} s", flush=True)
    return np.load(fb), np.load(fq), np.load(fg)


class Ann:
    """One candidate behind the same four calls."""

    def __init__(self, kind: str, dim: int, m: int, efc: int) -> None:
        self.kind, self.dim, self.m, self.efc = kind, dim, m, efc
        self.ix: Any = None

    def build(self, xb: np.ndarray, threads: int) -> None:
        kind, dim, m, efc = self.kind, self.dim, self.m, self.efc
        if kind.startswith("faiss"):
            import faiss

            faiss.omp_set_num_threads(threads)
            if kind == "faiss-hnsw-flat":
                ix = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            else:
                ix = faiss.IndexHNSWSQ(
                    dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT
                )
                ix.train(xb[: min(len(xb), 100_000)])
            ix.hnsw.efConstruction = efc
            ix.add(xb)
        elif kind.startswith("usearch"):
            from usearch.index import Index

            ix = Index(
                ndim=dim,
                metric="cos",
                dtype=kind.split("-")[1],
                connectivity=m,
                expansion_add=efc,
            )
            ix.add(np.arange(len(xb), dtype=np.uint64), xb, threads=threads)
        elif kind == "hnswlib":
            import hnswlib

            ix = hnswlib.Index(space="ip", dim=dim)
            ix.init_index(max_elements=len(xb), ef_construction=efc, M=m)
            ix.add_items(xb, np.arange(len(xb)), num_threads=threads)
        else:
            raise SystemExit(f"unknown index {kind}")
        self.ix = ix

    def set_ef(self, ef: int) -> None:
        if self.kind.startswith("faiss"):
            import faiss

            faiss.omp_set_num_threads(1)
            self.ix.hnsw.efSearch = ef
        elif self.kind.startswith("usearch"):
            self.ix.expansion_search = ef
        else:
            self.ix.set_num_threads(1)
            self.ix.set_ef(max(ef, K))

    def search(self, q: np.ndarray) -> np.ndarray:
        if self.kind.startswith("faiss"):
            return self.ix.search(q, K)[1]
        if self.kind.startswith("usearch"):
            r = self.ix.search(q, K, threads=1)
            keys = np.asarray(r.keys, dtype=np.int64)
            return keys.reshape(len(q), K) if keys.ndim == 2 or len(q) > 1 else keys.reshape(1, -1)
        return self.ix.knn_query(q, k=K)[0].astype(np.int64)

    def save(self, path: str) -> None:
        if self.kind.startswith("faiss"):
            import faiss

            faiss.write_index(self.ix, path)
        else:
            (self.ix.save if self.kind.startswith("usearch") else self.ix.save_index)(path)

    def open_mapped(self, path: str) -> None:
        """The saved index mapped read-only, as a segment file would be (issue 27's design)."""
        if self.kind.startswith("faiss"):
            import faiss

            self.ix = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)
        elif self.kind.startswith("usearch"):
            from usearch.index import Index

            self.ix = Index.restore(path, view=True)
        else:
            raise SystemExit("hnswlib cannot map an index file: it always loads a private copy")

    def size_bytes(self) -> int:
        if self.kind.startswith("faiss"):
            import faiss

            return int(faiss.serialize_index(self.ix).size)
        with tempfile.TemporaryDirectory(dir=os.environ.get("ANN_TMP", "/tmp")) as d:
            p = os.path.join(d, "ix.bin")
            (self.ix.save if self.kind.startswith("usearch") else self.ix.save_index)(p)
            return os.path.getsize(p)


def recall(found: np.ndarray, gt: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(g.tolist())) for f, g in zip(found, gt, strict=True))
    return hits / (K * len(gt))


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - w, time.process_time() - c


def mapped_run(
    ann: Ann, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace, base: dict
) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("ANN_TMP", "/tmp")) as d:
        path = os.path.join(d, "ix.bin")
        ann.save(path)
        ann.ix = None
        gc.collect()
        r0 = rss_parts()
        _, load_s, _ = timed(lambda: ann.open_mapped(path))
        r1 = rss_parts()
        ann.set_ef(args.mapped)
        lat = np.empty(len(xq))
        found = np.empty((len(xq), K), dtype=np.int64)
        w0 = time.perf_counter()
        for i in range(len(xq)):
            t = time.perf_counter_ns()
            found[i] = ann.search(xq[i : i + 1])[0]
            lat[i] = time.perf_counter_ns() - t
        wall = time.perf_counter() - w0
        r2 = rss_parts()
        row = dict(
            base,
            mapped=True,
            ef_search=args.mapped,
            map_load_s=round(load_s, 3),
            map_private_b_per_vec_after_load=round((r1["RssAnon"] - r0["RssAnon"]) / args.n, 1),
            map_private_b_per_vec_after_queries=round((r2["RssAnon"] - r0["RssAnon"]) / args.n, 1),
            map_file_mb_touched=round((r2["RssFile"] - r0["RssFile"]) / 2**20, 1),
            recall10=round(recall(found, gt), 4),
            single_qps_wall=round(len(xq) / wall),
            p95_ms=round(float(np.percentile(lat, 95)) / 1e6, 3),
            load1=os.getloadavg()[0],
        )
        print(json.dumps(row), flush=True)
        ann.ix = None
        return row


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--index", required=True, choices=INDEXES)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--centres", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--efs", default="16,32,64,128")
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--cache", default="/tmp/ann-bench-cache")
    p.add_argument("--out", default="")
    p.add_argument(
        "--mapped",
        type=int,
        default=0,
        help="after the in-memory runs: save, drop, map the file read-only, search it at this ef",
    )
    args = p.parse_args()

    xb, xq, gt = load(args)
    half = len(xq) // 2
    # the library's own import (shared objects, OpenMP pools) is not the index's memory
    __import__(
        {"faiss": "faiss", "usearch": "usearch.index"}.get(args.index.split("-")[0], "hnswlib")
    )
    gc.collect()
    rss0 = rss_bytes()
    ann = Ann(args.index, args.dim, args.m, args.ef_construction)
    _, build_s, build_cpu = timed(lambda: ann.build(xb, args.build_threads))
    gc.collect()
    rss1 = rss_bytes()
    size = ann.size_bytes()
    base = {
        "index": args.index,
        "n": args.n,
        "dim": args.dim,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "build_threads": args.build_threads,
        "build_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu, 1),
        "rss_delta_b_per_vec": round((rss1 - rss0) / args.n, 1),
        "index_b_per_vec": round(size / args.n, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "load1": os.getloadavg()[0],
    }
    print(json.dumps(base), flush=True)
    rows = []
    for ef in (int(e) for e in args.efs.split(",")):
        ann.set_ef(ef)
        ann.search(xq[:50])  # warm the caches and the library's lazy set-up
        lat = np.empty(len(xq))
        found = np.empty((len(xq), K), dtype=np.int64)
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(len(xq)):
            t = time.perf_counter_ns()
            found[i] = ann.search(xq[i : i + 1])[0]
            lat[i] = time.perf_counter_ns() - t
        single_wall, single_cpu = time.perf_counter() - w0, time.process_time() - c0
        batch, bw, bc = timed(lambda: ann.search(xq))
        row = dict(
            base,
            ef_search=ef,
            recall10=round(recall(found, gt), 4),
            recall10_dups=round(recall(found[:half], gt[:half]), 4),
            recall10_fresh=round(recall(found[half:], gt[half:]), 4),
            top1_dups=round(float(np.mean(found[:half, 0] == gt[:half, 0])), 4),
            single_qps_wall=round(len(xq) / single_wall),
            single_qps_cpu=round(len(xq) / single_cpu),
            p50_ms=round(float(np.percentile(lat, 50)) / 1e6, 3),
            p95_ms=round(float(np.percentile(lat, 95)) / 1e6, 3),
            p99_ms=round(float(np.percentile(lat, 99)) / 1e6, 3),
            batch_qps_wall=round(len(xq) / bw),
            batch_qps_cpu=round(len(xq) / bc),
            batch_recall10=round(recall(batch, gt), 4),
            load1=os.getloadavg()[0],
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.mapped:
        rows.append(mapped_run(ann, xq, gt, args, base))
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
