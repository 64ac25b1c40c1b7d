"""`bench/bench_gpu.py --dry-run`: the GPU bench's whole path (processes, IO binding, stages,
policy) on CPU, so `make bench-gpu` is known to work before a GPU is lent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_bench_gpu_dry_run_measures_every_stage(datasets_dir: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(BENCH))
    rows = bench_gpu.main(["--dry-run"])
    assert [r["config"]["processes"] for r in rows if r["config"]["decoder"] == "cpu"] == [1, 2]
    for row in rows:
        assert row["config"]["provider"] == "cpu"
        assert row["listings_per_s"] > 0
        assert {"fetch", "model inputs", "model: category", "model: nudity", "policy"} <= set(row)
        assert any(k.startswith("decode (") for k in row)


def test_bench_gpu_refuses_without_cuda_or_wheels(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(BENCH))
    with pytest.raises(SystemExit, match="onnxruntime_gpu"):
        bench_gpu.install(tmp_path)
