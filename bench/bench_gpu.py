"""GPU throughput of the pipeline's stages: providers × batch sizes × JPEG decoders × processes.

    make bench-gpu          # = python bench/bench_gpu.py --install-from .whl
    python bench/bench_gpu.py --dry-run      # CPU only, tiny: checks the whole path here

On a machine with an NVIDIA GPU, `--install-from DIR` first replaces the CPU onnxruntime with
the onnxruntime-gpu wheel carried in DIR and installs nvidia-nvimgcodec-cu12 (and any CUDA
runtime wheels) from there, with no index (docs/deployment.md: never both onnxruntime
packages at once). Then for every combination of `--providers` (TensorRT fp16 with an engine
cache, CUDA), `--batches` (photos per model call), `--decoders` (nvImageCodec on the GPU, or
Pillow draft-mode decoding on CPU threads) and `--processes` (worker processes sharing the
GPU) it runs the same listings (listings-v1 val photos, repeated to `--listings`) through
fetch → decode → model inputs → category model + open_nsfw (IO binding) → policy, and prints
listings/s end to end (first process start to last finish, after every process has built
and warmed up its sessions) and the time per stage. Nothing is stored: the broker and
PostgreSQL costs are measured by bench_e2e.py.

`--dry-run` runs the same code on CPU (CPUExecutionProvider, CPU decode unless nvImageCodec
is importable, batch 8, one and two processes, 24 listings) so it is tested without a GPU.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_stages import Config, gpu_decoder, run_process  # noqa: E402


def install(wheels: Path) -> None:
    """onnxruntime-gpu and nvImageCodec from the carried wheels, no index."""
    found = sorted(glob.glob(str(wheels / "*.whl")))
    if not any("onnxruntime_gpu" in w for w in found):
        raise SystemExit(f"no onnxruntime_gpu-*.whl in {wheels} (see docs/performance.md)")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "uninstall", "-y", "onnxruntime"], check=False)
    subprocess.run(
        [*pip, "install", "--no-index", "--find-links", str(wheels), "--force-reinstall",
         "--no-deps", *found],
        check=True,
    )  # fmt: skip


def events_for(listings: int) -> tuple[list[Any], Any]:
    from modq.cli.demo import sample_events
    from modq.domain.events import ListingEvent
    from modq.settings import get_settings

    settings = get_settings()
    settings = settings.model_copy(update={"image_roots": [str(settings.datasets_dir)]})
    photos = settings.datasets_dir / "listings-v1"
    base = [
        ListingEvent.model_validate(json.loads(line))
        for line in sample_events(photos, min(listings, 400), "gpu", bad_inputs=False)[0]
    ]
    return [base[i % len(base)] for i in range(listings)], settings


def _child(cfg: Config, shard: list[Any], settings: Any, cache: Path, barrier: Any, q: Any) -> None:
    def ready() -> None:
        barrier.wait()
        q.put(("start", time.time()))

    ms = run_process(cfg, shard, settings, cache, ready)
    q.put(("done", time.time(), ms, len(shard)))


def run_config(cfg: Config, events: list[Any], settings: Any, cache: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # CUDA contexts never cross a fork
    barrier, q = ctx.Barrier(cfg.processes), ctx.Queue()
    shards = [events[i :: cfg.processes] for i in range(cfg.processes)]
    procs = [
        ctx.Process(target=_child, args=(cfg, shard, settings, cache, barrier, q))
        for shard in shards
    ]
    for p in procs:
        p.start()
    starts: list[float] = []
    ends: list[float] = []
    stages: dict[str, float] = {}
    photos = sum(len(e.images) for e in events)
    for _ in range(2 * cfg.processes):
        msg = q.get(timeout=3600)
        if msg[0] == "start":
            starts.append(msg[1])
        else:
            ends.append(msg[1])
            for k, v in msg[2].items():
                stages[k] = stages.get(k, 0.0) + v
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a bench process failed ({p.exitcode}) for {cfg}")
    wall = max(ends) - min(starts)
    per_photo = {k: v / photos for k, v in stages.items()}
    return {"listings_per_s": len(events) / wall, "photos_per_s": photos / wall, **per_photo}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only, tiny (tested)")
    parser.add_argument("--install-from", type=Path, help="folder of wheels (e.g. .whl)")
    parser.add_argument("--providers", default="tensorrt,cuda")
    parser.add_argument("--batches", default="32,64,128,256")
    parser.add_argument("--decoders", default="nvimgcodec,cpu")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--listings", type=int, default=5000)
    parser.add_argument("--cache", type=Path, default=Path(".modq-data/trt-cache"))
    args = parser.parse_args(argv)
    if args.dry_run:
        args.providers, args.batches, args.processes, args.listings = "cpu", "8", "1,2", 24
        args.decoders = "cpu,nvimgcodec" if gpu_decoder() is not None else "cpu"
    elif args.install_from:
        install(args.install_from)
    import onnxruntime as ort

    available = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__}: {available}", flush=True)
    if not args.dry_run and "CUDAExecutionProvider" not in available:
        raise SystemExit("no CUDAExecutionProvider: run on an NVIDIA machine, or --dry-run")
    args.cache.mkdir(parents=True, exist_ok=True)
    events, settings = events_for(args.listings)
    rows = []
    print(f"{len(events)} listings, {sum(len(e.images) for e in events)} photos", flush=True)
    for provider in args.providers.split(","):
        for decoder in args.decoders.split(","):
            for batch in map(int, args.batches.split(",")):
                for procs in map(int, args.processes.split(",")):
                    cfg = Config(provider, batch, decoder, procs)
                    row = {"config": cfg.__dict__, **run_config(cfg, events, settings, args.cache)}
                    rows.append(row)
                    stages = ", ".join(
                        f"{k} {v:.2f}"
                        for k, v in row.items()
                        if k not in ("config",) and not k.endswith("_per_s")
                    )
                    print(
                        f"{provider:8s} {decoder:10s} batch {batch:3d} x{procs} processes: "
                        f"{row['listings_per_s']:8.1f} listings/s, {row['photos_per_s']:8.1f} "
                        f"photos/s | ms/photo (summed over processes): {stages}",
                        flush=True,
                    )
    return rows


if __name__ == "__main__":
    main()
