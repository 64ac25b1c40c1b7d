"""The shipped model end to end: real photos through Redis, a real worker process and ONNX
Runtime into PostgreSQL, and `modq classify` on real photos."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modq.cli.demo import sample_events
from modq.domain.contract import read_contract
from modq.ingest.submit_file import submit_lines
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.queries import query_verdicts
from tests.workerkit import WorkerProcess, running_worker, settings_env

LISTINGS = 200


@pytest.fixture(scope="module")
def settings(
    make_settings: Callable[..., Settings], shipped_model: Path, datasets_dir: Path
) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return make_settings(
        model_path=shipped_model,
        image_roots=[str(datasets_dir)],
        queue_new=f"test-e2e-{suffix}.new",
        queue_backfill=f"test-e2e-{suffix}.backfill",
    )


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(settings, tmp_path_factory.mktemp("logs") / "worker.log") as proc:
        yield proc


def test_200_real_listings_make_200_verdicts_and_mismatches_are_flagged(
    worker: WorkerProcess, settings: Settings, datasets_dir: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    lines, wrong = sample_events(
        datasets_dir / "listings-v1", LISTINGS, f"e2e-{run}", seed=11, bad_inputs=False
    )
    report = submit_lines(lines, settings)
    assert (report.queued, report.rejected) == (LISTINGS, [])
    engine = make_engine(settings.database_url)
    prefix = f"demo-e2e-{run}-"

    def all_verdicts() -> list[dict[str, Any]] | None:
        rows = query_verdicts(engine, limit=0, current_only=False)
        mine = [r for r in rows if r["listing_id"].startswith(prefix)]
        return mine if len(mine) >= LISTINGS else None

    rows = worker.wait_for(all_verdicts, 300, f"{LISTINGS} verdicts")
    engine.dispose()
    assert len(rows) == LISTINGS
    assert len({r["listing_id"] for r in rows}) == LISTINGS
    contract = read_contract(settings.model_path)
    assert {r["model_version"] for r in rows} == {contract.model_version}

    by_id = {r["listing_id"]: r for r in rows}
    assert 15 <= len(wrong) <= 50  # the sampler's ~15% share, so the figures below mean something
    flagged = [i for i in wrong if by_id[i]["decision"] != "approve"]
    assert len(flagged) >= 0.9 * len(wrong), [by_id[i]["reasons"] for i in wrong]
    for i in flagged:
        assert any(r["code"].startswith("category_") for r in by_id[i]["reasons"]), by_id[i]
    correct = [r for r in rows if r["listing_id"] not in wrong]
    approved = [r for r in correct if r["decision"] == "approve"]
    assert len(approved) >= 0.85 * len(correct), [r["reasons"] for r in correct]
    for row in rows:
        assert len(row["suggested"]) == 3
        assert row["best_photo"] is not None


def test_classify_gives_a_probability_for_every_label(
    settings: Settings, datasets_dir: Path
) -> None:
    labels = read_contract(settings.model_path).labels
    photos = [
        next(iter(sorted((datasets_dir / "listings-v1" / "val" / label).glob("*.jpg"))))
        for label in labels
    ]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "modq",
            "classify",
            "--top-k",
            str(len(labels)),
            "--detectors",
            "nudity",
            *map(str, photos),
        ],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["photo"] for r in rows] == [str(p) for p in photos]
    hits = 0
    for label, row in zip(labels, rows, strict=True):
        scores = dict(row["top"])
        assert set(scores) == set(labels)
        assert all(0.0 <= p <= 1.0 for p in scores.values())
        assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-3)
        assert [p for _, p in row["top"]] == sorted(scores.values(), reverse=True)
        assert {k.split(".")[0] for k in row["detectors"]} >= {"prohibited", "nudity"}
        hits += row["top"][0][0] == label
    assert hits >= len(labels) - 2  # one clear photo per category: nearly all right
    assert out.stderr.count("photo") >= 1  # the progress bar


def test_classify_runs_only_the_category_model_by_default(
    settings: Settings, datasets_dir: Path
) -> None:
    photo = next(iter(sorted((datasets_dir / "listings-v1" / "val").glob("*/*.jpg"))))
    out = subprocess.run(
        [sys.executable, "-m", "modq", "classify", "--no-progress", str(photo)],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert {k.split(".")[0] for k in row["detectors"]} == {"prohibited"}
    assert out.stderr == ""
