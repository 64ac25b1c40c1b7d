"""open_nsfw int8 (modq/assets/models/open-nsfw-int8.onnx) against fp32: drift, decisions, speed.

    .venv/bin/python bench/bench_nudity_int8.py [--limit 0]

Photos: every listings-v1 *val* photo (declared category = its folder) and every
prohibited-v1 photo (train + val; none shows nudity; declared as "electronics.phone", a
category without a nudity exception). Each photo is decoded as the worker does and prepared
once; both models score the same arrays. Decisions are the policy's `nudity.nsfw` action
(approve / review / reject, category exceptions included). Speed is ms per photo for one
ONNX call per 32 photos, best of 3 interleaved rounds, on this machine's threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modq.detectors.nudity import NudityDetector, prepare_photo
from modq.domain.preprocess import PreprocessSpec
from modq.domain.verdicts import PhotoResult
from modq.pipeline.decode import decode_image
from modq.policy.policy import Policy
from modq.settings import get_settings


def photo_sets(datasets: Path, limit: int) -> dict[str, list[tuple[Path, str]]]:
    listings = [
        (p, p.parent.name) for p in sorted((datasets / "listings-v1" / "val").glob("*/*.jpg"))
    ]
    prohibited = [
        (p, "electronics.phone") for p in sorted((datasets / "prohibited-v1").glob("*/*/*.jpg"))
    ]
    if limit:
        listings, prohibited = listings[:limit], prohibited[:limit]
    return {"listings-v1 val": listings, "prohibited-v1 (no nudity)": prohibited}


def scores(det: NudityDetector, arrays: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
    return np.array([s["nsfw"] for s in det._run(arrays)])


def speed(dets: list[NudityDetector], arrays: list[npt.NDArray[np.float32]]) -> list[float]:
    batch = arrays[:32]
    best = [float("inf")] * len(dets)
    for det in dets:
        det._run(batch)
    for _ in range(3):
        for i, det in enumerate(dets):
            started = time.perf_counter()
            det._run(batch)
            best[i] = min(best[i], 1e3 * (time.perf_counter() - started) / len(batch))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="photos per set (0 = all)")
    args = parser.parse_args()
    settings = get_settings()
    rules = Policy.load(settings.policy_path).detector_rules
    fp32 = NudityDetector(["CPUExecutionProvider"], precision="fp32")
    int8 = NudityDetector(["CPUExecutionProvider"], precision="int8")
    spec = PreprocessSpec(resize=fp32.min_side)
    all_arrays: list[npt.NDArray[np.float32]] = []
    for name, photos in photo_sets(settings.datasets_dir, args.limit).items():
        arrays = [
            prepare_photo(decode_image(p.read_bytes(), spec, settings.max_image_pixels))
            for p, _ in photos
        ]
        all_arrays += arrays
        a, b = scores(fp32, arrays), scores(int8, arrays)
        drift = np.abs(a - b)
        decide = [
            (
                rules.decide(cat, [PhotoResult(index=0, ref="x", detectors={"nudity.nsfw": x})])[0],
                rules.decide(cat, [PhotoResult(index=0, ref="x", detectors={"nudity.nsfw": y})])[0],
            )
            for (_, cat), x, y in zip(photos, a, b, strict=True)
        ]
        agree = sum(d32 == d8 for d32, d8 in decide)
        flagged = [sum(d != "approve" for d in col) for col in zip(*decide, strict=True)]
        print(
            f"{name}: {len(photos)} photos; |int8 - fp32| mean {drift.mean():.4f}, "
            f"p99 {np.quantile(drift, 0.99):.4f}, max {drift.max():.4f}; decisions agree "
            f"{agree}/{len(photos)}; flagged (review or reject) fp32 {flagged[0]}, "
            f"int8 {flagged[1]}"
        )
        for (p, _), (d32, d8), x, y in zip(photos, decide, a, b, strict=True):
            if d32 != d8:
                print(f"  differs: {p.name}: fp32 {x:.3f} {d32}, int8 {y:.3f} {d8}")
    ms = speed([fp32, int8], all_arrays)
    print(
        f"speed, batch 32: fp32 {ms[0]:.2f} ms/photo, int8 {ms[1]:.2f} ms/photo "
        f"({ms[0] / ms[1]:.2f}x)"
    )


if __name__ == "__main__":
    main()
