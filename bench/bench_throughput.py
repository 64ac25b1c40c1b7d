"""In-process pipeline throughput and per-stage time, this tree against a baseline tree.

    .venv/bin/python bench/bench_throughput.py --baseline /tmp/modq-base [--listings 400]
        [--rounds 2] [--env MODQ_X=Y ...]

Each round runs this tree and the baseline tree one after the other (interleaved, so the
shared machine's load weighs on both alike), each in its own process with PYTHONPATH set to
that tree, on the same N listings built from listings-v1 val (`sample_events`, seed 7), with
the default settings (every default detector; a throw-away PostgreSQL database so the image
banks and PDQ run). It calls `modq.pipeline.moderate.moderate` on batches of `batch_size`
after one warm-up batch, and prints listings/s, the ratio, the per-stage time and whether
the decisions are identical, plus the process CPU time per listing (all threads: the work
done, which a crowded machine inflates less than wall time). Per-stage times are the summed
wall time inside each stage's functions, per photo (stages overlap on threads, so they do
not add up to the total).

Make the baseline with `git worktree add --detach /tmp/modq-base 649f326` (that commit needs
`from modq.store import banks as bank_store` in modq/detectors/banks.py to build the banks).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
DATASETS = HERE.parent / "shared" / "datasets"
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


class Stages:
    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.ms[name] += (time.perf_counter() - started) * 1e3

        return timed


def instrument(rt: Any, stages: Stages) -> None:
    """Wrap each stage's functions, by name, in whichever tree runs (old and new layouts)."""
    import importlib

    from modq.pipeline import moderate as mod
    from modq.policy import detector_rules, policy

    sized: Any = None
    for where in ("modq.pipeline.sized", "modq.pipeline.photos"):  # photos: after issue 24
        with contextlib.suppress(ImportError):
            found = importlib.import_module(where)
            if sized is None and hasattr(found, "load_photo"):
                sized = found
    for module in (mod, sized):
        for attr, name in (("decode_image", "decode"), ("preprocess", "classifier input")):
            if module is not None and hasattr(module, attr):
                setattr(module, attr, stages.wrap(name, getattr(module, attr)))
    if sized is not None:
        # The PDQ hash, by whichever name the tree calls it.
        attr = next(a for a in ("photo_hash", "hash_photo", "fixed_pdq_hash") if hasattr(sized, a))
        setattr(sized, attr, stages.wrap("pdq", getattr(sized, attr)))
    else:
        setattr(mod, "pdq_hash", stages.wrap("pdq", getattr(mod, "pdq_hash")))  # noqa: B009, B010
    rt.read = stages.wrap("fetch", rt.read)
    rt.classifier.predict = stages.wrap("model: category", rt.classifier.predict)
    for det in rt.detectors:
        for attr in ("score", "score_prepared"):
            if hasattr(det, attr):
                setattr(det, attr, stages.wrap(f"model: {det.name}", getattr(det, attr)))
        if hasattr(det, "prepare"):
            det.prepare = stages.wrap(f"{det.name} input", det.prepare)
    if rt.banks is not None:
        rt.banks.check = stages.wrap("banks (PDQ lookup + save)", rt.banks.check)
    pol: Any = policy.Policy
    rules: Any = detector_rules.DetectorRules
    pol.decide_category = stages.wrap("policy", pol.decide_category)
    rules.decide = stages.wrap("policy", rules.decide)


def child(listings: int, out: Path) -> None:
    """Runs inside the tree under test (its modq on PYTHONPATH)."""
    from modq.cli.demo import sample_events
    from modq.domain.events import ListingEvent
    from modq.pipeline import moderate as mod
    from modq.settings import get_settings

    settings = get_settings()
    photos_dir = settings.datasets_dir / "listings-v1"
    lines, _ = sample_events(photos_dir, listings, "tp", bad_inputs=False)
    events = [ListingEvent.model_validate(json.loads(line)) for line in lines]
    settings = settings.model_copy(update={"image_roots": [str(settings.datasets_dir)]})
    kwargs: dict[str, Any] = {}
    if "stores" in inspect.signature(mod.Runtime.build).parameters:
        # Trees with the store Protocols get their stores passed in (older trees build their
        # own engine): image banks and photo hashes run in both.
        from modq.store.stores import open_stores

        kwargs["stores"] = open_stores(settings.database_url)
    rt = mod.Runtime.build(settings, **kwargs)
    stages = Stages()
    try:
        instrument(rt, stages)
        size = settings.batch_size
        mod.moderate(events[:size], rt)  # warm-up
        stages.ms.clear()
        decisions: dict[str, Any] = {}
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(events), size):
            for v in mod.moderate(events[start : start + size], rt):
                decisions[v.listing_id] = [v.decision, sorted(r.text() for r in v.reasons)]
        spent, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        rt.close()
    photos = sum(len(e.images) for e in events)
    out.write_text(
        json.dumps(
            {
                "listings": len(events),
                "photos": photos,
                "seconds": spent,
                "cpu_seconds": cpu,
                "stages_ms_per_photo": {k: v / photos for k, v in stages.ms.items()},
                "decisions": decisions,
            }
        )
    )


def run_tree(tree: Path, listings: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", out.name,
             "--listings", str(listings)],
            check=True,
            cwd=tree,
            env={**os.environ, "MODQ_DATASETS_DIR": str(DATASETS), **env, "PYTHONPATH": str(tree)},
        )  # fmt: skip
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def fresh_database(name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from modq.store.database import migrate

    migrate(url)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="tree of the baseline commit")
    parser.add_argument("--listings", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for this tree")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.listings, args.child)
        return
    trees = {"this tree": HERE, **({"baseline": args.baseline} if args.baseline else {})}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in range(args.rounds):
        for label, tree in trees.items():
            url = fresh_database(f"modq_bench_tp_{label.replace(' ', '_')}")
            extra = dict(kv.split("=", 1) for kv in args.env) if label == "this tree" else {}
            result = run_tree(tree, args.listings, {"MODQ_DATABASE_URL": url, **extra})
            runs[label].append(result)
            rate = result["listings"] / result["seconds"]
            cpu_ms = 1e3 * result["cpu_seconds"] / result["listings"]
            print(
                f"round {r + 1} {label:9s}: {rate:6.2f} listings/s, "
                f"{cpu_ms:6.1f} CPU ms per listing (all threads)",
                flush=True,
            )
    best = {label: max(x["listings"] / x["seconds"] for x in rs) for label, rs in runs.items()}
    first = runs["this tree"][0]
    print(f"\n{first['listings']} listings, {first['photos']} photos; best of {args.rounds}:")
    for label, rate in best.items():
        per_listing = first["photos"] / first["listings"]
        print(f"  {label:9s}: {rate:6.2f} listings/s, {rate * per_listing:6.1f} photos/s")
    if "baseline" in best:
        ratios = [
            (a["listings"] / a["seconds"]) / (b["listings"] / b["seconds"])
            for a, b in zip(runs["this tree"], runs["baseline"], strict=True)
        ]
        print(f"  ratio this/baseline per round: {', '.join(f'{x:.2f}' for x in ratios)}")
        base = runs["baseline"][0]
        same = sum(first["decisions"][k] == base["decisions"].get(k) for k in first["decisions"])
        print(f"  decisions + reasons identical: {same}/{len(first['decisions'])}")
        for k, v in first["decisions"].items():
            if v != base["decisions"].get(k):
                print(f"    {k}: baseline {base['decisions'].get(k)} -> {v}")
    print("\nstage (summed ms per photo, first round)   " + "  ".join(f"{k:>10s}" for k in runs))
    names = sorted({s for rs in runs.values() for s in rs[0]["stages_ms_per_photo"]})
    for name in names:
        cells = [rs[0]["stages_ms_per_photo"].get(name) for rs in runs.values()]
        text = "  ".join(f"{c:10.2f}" if c is not None else f"{'-':>10s}" for c in cells)
        print(f"  {name:40s} {text}")


if __name__ == "__main__":
    main()
