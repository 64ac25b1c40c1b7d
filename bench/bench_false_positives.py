"""Banned-content decisions on photos with known answers, through the worker's own path.

    MODQ_DETECTORS=nudity .venv/bin/python bench/bench_false_positives.py

Runs `modq classify`'s code (the worker's decode, one ONNX call per chunk with the prohibited
head, the loaded detectors) over every listings-v1 validation photo (all benign, declared in
their own category) and every prohibited-v1 validation photo (declared `other.unknown`, so no
category exception applies), applies the policy's detector rules and prints, per split and
label, how many photos were sent to review or auto-rejected, and which labels fired.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from modq.domain.verdicts import PhotoResult
from modq.pipeline.classify import classify_files
from modq.policy.policy import Policy
from modq.settings import get_settings


def main() -> None:
    settings = get_settings()
    rules = Policy.load(settings.policy_path).detector_rules
    print(f"model {settings.model_path.name}, policy {settings.policy_path.name}, "
          f"detectors {settings.detectors}")  # fmt: skip
    for split in ("listings-v1", "prohibited-v1"):
        paths = sorted((settings.datasets_dir / split / "val").glob("*/*.jpg"))
        started = time.perf_counter()
        rows = list(classify_files(paths, settings, top_k=1))
        spent = time.perf_counter() - started
        decisions: Counter[tuple[str, str]] = Counter()
        fired: Counter[str] = Counter()
        for path, row in zip(paths, rows, strict=True):
            group = Path(row["photo"]).parent.name
            if "error" in row:
                decisions[group, "error"] += 1
                continue
            category = group if split == "listings-v1" else "other.unknown"
            photo = PhotoResult(index=0, ref=str(path), detectors=row["detectors"])
            decision, reasons = rules.decide(category, [photo])
            decisions[group, decision] += 1
            for reason in reasons:
                fired[f"{decision}: {reason.split(': ')[2].split(' ')[0]}"] += 1
        groups = sorted({g for g, _ in decisions})
        n = len(paths)
        print(f"\n{split} val: {n} photos in {spent:.0f} s ({1000 * spent / n:.0f} ms/photo)")
        for group in groups:
            total = sum(v for (g, _), v in decisions.items() if g == group)
            print(f"  {group:22s} {total:5d}  review {decisions[group, 'review']:4d}  "
                  f"reject {decisions[group, 'reject']:4d}")  # fmt: skip
        rev = sum(v for (_, d), v in decisions.items() if d == "review")
        rej = sum(v for (_, d), v in decisions.items() if d == "reject")
        print(f"  {'all':22s} {n:5d}  review {rev:4d} ({rev / n:.2%})  "
              f"reject {rej:4d} ({rej / n:.2%})")  # fmt: skip
        for label, count in sorted(fired.items()):
            print(f"    {label}: {count}")


if __name__ == "__main__":
    main()
