"""Same decisions before and after a refactor: the pipeline over listings-v1 val, written down.

    PYTHONPATH=$PWD .venv/bin/python bench/compare_decisions.py --out /tmp/after.json
    cd /tmp/base && PYTHONPATH=$PWD python bench/compare_decisions.py --out /tmp/before.json
    .venv/bin/python bench/compare_decisions.py --compare /tmp/before.json /tmp/after.json

Listings are built deterministically from the val photos (every photo used once, 1-3 photos of
one category per listing, a seeded share declared as another category, half of those inside
the same macro category), moderated by `modq.pipeline.moderate.moderate` with the worker's
runtime (classifier, heads in its graph, the detectors of MODQ_DETECTORS except banks, which
needs a database, and the shipped policy), and each listing's decision and reason codes are
written to a JSON file (the reasons' sentences too). `--compare` reports how many listings got
the same decision and codes, and how many the same sentences. It reads reasons as objects or
as the strings older versions produced, so it runs unchanged on an older checkout.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SEED = 20261207
MISDECLARED = 0.15


def _macro(category: str) -> str:
    return category.split(".", 1)[0]


def build_listings(val: Path) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    categories = sorted(p.name for p in val.iterdir() if p.is_dir())
    out: list[dict[str, Any]] = []
    for cat in categories:
        photos = sorted(str(p) for p in (val / cat).iterdir() if p.is_file())
        rng.shuffle(photos)
        while photos:
            k = rng.randint(1, 3)
            images, photos = photos[:k], photos[k:]
            declared = cat
            if rng.random() < MISDECLARED:
                same = [c for c in categories if c != cat and _macro(c) == _macro(cat)]
                cross = [c for c in categories if _macro(c) != _macro(cat)]
                pool = same if same and rng.random() < 0.5 else cross
                declared = pool[rng.randrange(len(pool))]
            out.append(
                {"listing_id": f"val-{len(out):04d}", "declared_category": declared,
                 "images": images, "seller_id": "s"}
            )  # fmt: skip
    return out


def _reason(value: Any) -> tuple[str, str]:
    """(code, sentence) of a reason, whichever form this checkout produces."""
    if isinstance(value, str):
        return value.split(":", 1)[0].strip(), value
    return value.code, value.text()


def run(out: Path, batch: int) -> None:
    from modq.domain.events import ListingEvent
    from modq.pipeline.moderate import moderate
    from modq.pipeline.runtime import Runtime
    from modq.settings import Settings

    settings = Settings()
    val = settings.datasets_dir / "listings-v1" / "val"
    listings = build_listings(val)
    settings = settings.model_copy(
        update={"detectors": [d for d in settings.detectors if d != "banks"]}
    )
    rt = Runtime.build(settings, read=lambda ref: Path(ref).read_bytes())
    started = time.perf_counter()
    decisions: dict[str, Any] = {}
    try:
        for start in range(0, len(listings), batch):
            events = [ListingEvent(**li) for li in listings[start : start + batch]]
            for verdict in moderate(events, rt):
                reasons = [_reason(r) for r in verdict.reasons]
                decisions[verdict.listing_id] = {
                    "decision": verdict.decision,
                    "codes": sorted(code for code, _ in reasons),
                    "reasons": [text for _, text in reasons],
                }
    finally:
        rt.close()
    photos = sum(len(li["images"]) for li in listings)
    print(f"{len(listings)} listings, {photos} photos in {time.perf_counter() - started:.0f} s")
    out.write_text(json.dumps(decisions, indent=1, sort_keys=True))


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    keys = sorted(set(a) | set(b))
    same = [k for k in keys if k in a and k in b and
            (a[k]["decision"], a[k]["codes"]) == (b[k]["decision"], b[k]["codes"])]  # fmt: skip
    texts = [k for k in same if a[k]["reasons"] == b[k]["reasons"]]
    print(f"{len(same)} of {len(keys)} identical (decision and reason codes)")
    print(f"{len(texts)} of {len(keys)} with identical reason sentences")
    for k in keys:
        if k not in same:
            print(f"  {k}: {a.get(k)} -> {b.get(k)}")
    return 0 if len(same) == len(keys) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--batch", type=int, default=32, help="listings per moderate() call")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        raise SystemExit(compare(*args.compare))
    if args.out is None:
        parser.error("--out or --compare")
    run(args.out, args.batch)


if __name__ == "__main__":
    main()
