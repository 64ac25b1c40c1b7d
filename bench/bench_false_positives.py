"""Banned-content decisions on photos with known answers, through the worker's own path.

    .venv/bin/python bench/bench_false_positives.py [--prohibited prohibited-v2]

Runs the worker's load-and-infer path (`modq.pipeline.moderate.infer_photos`: its decode, one
ONNX call per chunk with the prohibited head, the loaded detectors, each switched on or off
per declared category by the policy exactly as in the worker) over every listings-v1
validation photo (all benign, declared in their own category) and every validation photo of
the prohibited set (declared `other.unknown`, so no category exception applies), applies the
policy's detector rules and prints, per split and label, how many photos were sent to review
or auto-rejected, and which labels fired. For the prohibited set it also prints each label's
photos flagged by their own label (`prohibited.<label>`), split by the size of the largest
YOLO box (product-like, close/in hand, scene) and by origin.

`MODQ_DETECTORS` defaults to the worker's (nudity, contacts, banks): contacts is loaded (so the
decoder keeps 736 px, as in the default worker) but the default policy runs it in no
category; banks need a database and have no entries here, so they flag nothing.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from pathlib import Path

from modq.domain.verdicts import PhotoResult
from modq.errors import PhotoFetchError
from modq.pipeline.photos import infer_photos
from modq.pipeline.runtime import Runtime
from modq.policy.policy import Policy
from modq.settings import get_settings
from training.prohibited_data import (
    list_labelled_photos,
    object_size,
    photo_origins,
    size_bucket,
)


def read(ref: str) -> bytes:
    try:
        return Path(ref).read_bytes()
    except OSError as exc:
        raise PhotoFetchError(f"cannot read {ref}: {exc.strerror}") from exc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prohibited", default="prohibited-v2", help="dataset under datasets_dir")
    args = parser.parse_args()
    settings = get_settings()
    rules = Policy.load(settings.policy_path).detector_rules
    print(f"model {settings.model_path.name}, policy {settings.policy_path.name}, "
          f"detectors {settings.detectors}")  # fmt: skip
    rt = Runtime.build(settings, read=read)
    try:
        for split in ("listings-v1", args.prohibited):
            paths = sorted((settings.datasets_dir / split / "val").glob("*/*.jpg"))
            groups = [p.parent.name for p in paths]
            categories = [g if split == "listings-v1" else "other.unknown" for g in groups]
            started = time.perf_counter()
            outcomes = dict(infer_photos([str(p) for p in paths], rt, categories))
            spent = time.perf_counter() - started
            decisions: Counter[tuple[str, str]] = Counter()
            fired: Counter[str] = Counter()
            own: dict[str, bool] = {}
            for i, path in enumerate(paths):
                out = outcomes[i]
                if out.probs is None:
                    decisions[groups[i], "error"] += 1
                    continue
                photo = PhotoResult(index=0, ref=str(path), detectors=out.detectors)
                decision, reasons = rules.decide(categories[i], [photo])
                decisions[groups[i], decision] += 1
                for reason in reasons:
                    fired[f"{decision}: {reason.split(': ')[2].split(' ')[0]}"] += 1
                mine = f"prohibited.{groups[i]} "
                own[str(path)] = any(r.split(": ")[2].startswith(mine) for r in reasons)
            n = len(paths)
            print(f"\n{split} val: {n} photos in {spent:.0f} s ({1000 * spent / n:.0f} ms/photo)")
            for group in sorted(set(groups)):
                total = groups.count(group)
                print(f"  {group:22s} {total:5d}  review {decisions[group, 'review']:4d}  "
                      f"reject {decisions[group, 'reject']:4d}")  # fmt: skip
            rev = sum(v for (_, d), v in decisions.items() if d == "review")
            rej = sum(v for (_, d), v in decisions.items() if d == "reject")
            print(f"  {'all':22s} {n:5d}  review {rev:4d} ({rev / n:.2%})  "
                  f"reject {rej:4d} ({rej / n:.2%})")  # fmt: skip
            for label, count in sorted(fired.items()):
                print(f"    {label}: {count}")
            if split != "listings-v1":
                by_source(settings.datasets_dir / split, own)
    finally:
        rt.close()


def by_source(root: Path, own: dict[str, bool]) -> None:
    """Photos flagged by their own label's rule, per label and source."""
    photos = list_labelled_photos(root, "val")
    origins = photo_origins(root, "val", photos)
    print("  flagged by their own label (review or reject), per source:")
    for label in sorted(set(photos.labels) - {"benign"}):
        rows: dict[str, list[bool]] = defaultdict(list)
        for path, lb, origin in zip(photos.paths, photos.labels, origins, strict=True):
            if lb == label and str(path) in own:
                hit = own[str(path)]
                rows["all"].append(hit)
                rows[size_bucket(object_size(root, "val", path))].append(hit)
                rows[f"from {origin}"].append(hit)
        print(f"    {label}: " + "; ".join(f"{k} {sum(v)}/{len(v)}" for k, v in rows.items()))


if __name__ == "__main__":
    main()
