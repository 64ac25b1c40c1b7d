"""Throughput of the moderation pipeline on real listing photos, without broker or database.

    .venv/bin/python bench/bench_pipeline.py [--listings 200] [--detectors nudity]
    .venv/bin/python bench/bench_pipeline.py --compare runs/listings-v1/model.onnx [MODEL ...]

Prints, on this machine:
- the model alone: ms per photo for one ONNX call per batch (batch 1 and `--batch`), after a
  warm-up, and the same for `--compare MODEL` (e.g. runs/listings-v1/model.onnx, the export
  `make model` writes before it adds the prohibited head, to measure what the head costs),
  both in the same run;
- the whole pipeline (`modq.pipeline.moderate.moderate`: fetch, draft-mode decode on the pool,
  one ONNX call per chunk, detectors, policy) on listings built from listings-v1 val, as
  listings/s and photos/s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from modq.cli.demo import sample_events
from modq.domain.events import ListingEvent
from modq.pipeline.infer import Classifier
from modq.pipeline.moderate import moderate
from modq.pipeline.runtime import Runtime
from modq.settings import get_settings


def model_ms_per_photo(paths: list[Path], batch: int, repeats: int, rounds: int) -> list[float]:
    """Best-of-`rounds` ms per photo for each model, the models' rounds interleaved so that
    whatever else the machine does at the time weighs on all of them alike."""
    settings = get_settings()
    classifiers = [Classifier.from_path(path, settings) for path in paths]
    size = classifiers[0].contract.preprocess.input_size
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    best = [float("inf")] * len(classifiers)
    for classifier in classifiers:
        classifier.predict(x)  # warm-up: allocations and kernel selection
    for _ in range(rounds):
        for i, classifier in enumerate(classifiers):
            started = time.perf_counter()
            for _ in range(repeats):
                classifier.predict(x)
            best[i] = min(best[i], 1000 * (time.perf_counter() - started) / (repeats * batch))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (best is kept)")
    parser.add_argument(
        "--compare", type=Path, nargs="*", default=[], help="more models for the model-only timing"
    )
    parser.add_argument(
        "--detectors", default="nudity", help="comma-separated (MODQ_DETECTORS); '' for none"
    )
    args = parser.parse_args()
    settings = get_settings()

    print(f"model {settings.model_path}")
    models = [settings.model_path, *args.compare]
    for batch in (1, args.batch):
        repeats = max(1, 64 // batch)
        timings = model_ms_per_photo(models, batch, repeats, args.rounds)
        for path, ms in zip(models, timings, strict=True):
            print(f"  {path.name:32s} batch {batch:3d}: {ms:6.2f} ms/photo")

    photos = settings.datasets_dir / "listings-v1"
    lines, _ = sample_events(photos, args.listings, "bench", bad_inputs=False)
    events = [ListingEvent.model_validate(json.loads(line)) for line in lines]
    detectors = [d for d in args.detectors.split(",") if d]
    rt = Runtime.build(
        settings.model_copy(
            update={"image_roots": [str(settings.datasets_dir)], "detectors": detectors}
        ),
    )
    try:
        moderate(events[: args.batch], rt)  # warm-up
        n_photos = sum(len(e.images) for e in events)
        started = time.perf_counter()
        for start in range(0, len(events), settings.batch_size):
            moderate(events[start : start + settings.batch_size], rt)
        spent = time.perf_counter() - started
    finally:
        rt.close()
    print(
        f"pipeline ({settings.batch_size} listings a batch, {settings.decode_threads} decode "
        f"threads, detectors {detectors or 'none'}): {len(events)} listings, {n_photos} photos "
        f"in {spent:.1f} s = {len(events) / spent:.1f} listings/s, {n_photos / spent:.1f} photos/s"
    )


if __name__ == "__main__":
    main()
