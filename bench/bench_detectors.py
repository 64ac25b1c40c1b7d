"""False positives and cost per photo of the image detectors at the policy's thresholds.

    .venv/bin/python bench/bench_detectors.py --detector nudity [--limit N]
    .venv/bin/python bench/bench_detectors.py --detector contacts [--limit N]

Runs the detector over every listings-v1 validation photo (all benign) and the prohibited-v1
validation photos, decoded as the worker decodes them, and prints per category the share
sent to review / auto-rejected under modq/assets/policies/default.toml (with its per-category
exceptions), plus milliseconds per photo (single process, this machine).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from modq.detectors.base import Detector
from modq.domain.preprocess import PreprocessSpec
from modq.domain.verdicts import PhotoResult
from modq.pipeline.decode import decode_image
from modq.policy.policy import Policy
from modq.settings import get_settings


def _build(name: str) -> Detector:
    if name == "nudity":
        from modq.detectors.nudity import NudityDetector

        return NudityDetector(["CPUExecutionProvider"])
    from modq.detectors.contacts import ContactsDetector

    return ContactsDetector(["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", choices=["nudity", "contacts"], required=True)
    parser.add_argument("--limit", type=int, default=0, help="photos per split (0 = all)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    settings = get_settings()
    rules = Policy.load(settings.policy_path).detector_rules
    detector = _build(args.detector)
    spec = PreprocessSpec(resize=max(224, detector.min_side))
    for split in ("listings-v1", "prohibited-v1"):
        paths = sorted((settings.datasets_dir / split / "val").glob("*/*.jpg"))
        if args.limit:
            paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]
        counts: Counter[tuple[str, str]] = Counter()
        totals: Counter[str] = Counter()
        errors, spent = 0, 0.0
        for start in range(0, len(paths), args.batch):
            chunk = paths[start : start + args.batch]
            images = [decode_image(p.read_bytes(), spec, settings.max_image_pixels) for p in chunk]
            started = time.perf_counter()
            results = detector.score(images)
            spent += time.perf_counter() - started
            for path, result in zip(chunk, results, strict=True):
                group = path.parent.name
                totals[group] += 1
                if isinstance(result, Exception):
                    errors += 1
                    continue
                scores = {f"{detector.name}.{k}": v for k, v in result.items()}
                category = group if split == "listings-v1" else "other.unknown"
                decision, _ = rules.decide(
                    category, [PhotoResult(index=0, ref="", detectors=scores)]
                )
                counts[group, decision] += 1
        n = sum(totals.values())
        print(
            f"\n{split} val: {n} photos, {1000 * spent / max(n, 1):.1f} ms/photo, {errors} errors"
        )
        for group in sorted(totals):
            rev, rej = counts[group, "review"], counts[group, "reject"]
            print(f"  {group:22s} {totals[group]:5d}  review {rev:4d}  reject {rej:4d}")
        rev = sum(v for (_, d), v in counts.items() if d == "review")
        rej = sum(v for (_, d), v in counts.items() if d == "reject")
        print(f"  {'all':22s} {n:5d}  review {rev:4d} ({rev / max(n, 1):.2%})  "
              f"reject {rej:4d} ({rej / max(n, 1):.2%})")  # fmt: skip


if __name__ == "__main__":
    main()
