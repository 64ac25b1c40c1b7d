"""The ship gate (`modq-train compare`): it passes a model identical to the shipped one and
refuses, naming the class, one that lost a class; scores are cached per model file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from modq.settings import Settings
from tests.modelkit import build_tiny_model, listing_labels
from tests.photokit import colour_jpeg
from training import TrainingError
from training.compare import compare

LOST = "fashion.tshirt"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A listings-v1 val split of solid-colour photos the tiny model recognises."""
    root = tmp_path_factory.mktemp("datasets")
    for label in listing_labels():
        folder = root / "listings-v1" / "val" / label
        folder.mkdir(parents=True)
        for i in range(6):
            (folder / f"p{i}.jpg").write_bytes(colour_jpeg(label, (200 + 10 * i, 180)))
    return root


def _degraded(model: Path, out: Path) -> Path:
    """The same model with the LOST class's logit pushed down: it is never predicted."""
    proto = onnx.load(str(model))
    bias = next(t for t in proto.graph.initializer if t.name == "B")
    values = numpy_helper.to_array(bias).copy()
    values[listing_labels().index(LOST)] -= 1e4
    bias.CopyFrom(numpy_helper.from_array(values.astype(np.float32), "B"))
    onnx.save(proto, str(out))
    return out


def _settings(datasets: Path) -> Settings:
    return Settings(datasets_dir=datasets, decode_threads=2)


def test_gate_passes_an_identical_model(datasets: Path, tmp_path: Path) -> None:
    shipped = build_tiny_model(tmp_path / "shipped.onnx")
    same = build_tiny_model(tmp_path / "candidate.onnx")
    cache = tmp_path / "cache"
    report = compare(
        same, shipped, _settings(datasets), split="val", out=tmp_path / "r", cache=cache,
        listings=300, resamples=200,
    )  # fmt: skip
    assert report["verdict"] == "passed" and report["refusals"] == []
    assert report["category"]["top1"]["shipped"] == report["category"]["top1"]["candidate"] == 1.0
    assert all(c["flips"]["shipped_only"] == 0 for c in report["category"]["per_class"])
    # Identical files share one cache entry: scored once.
    assert len(list(cache.glob("*.npz"))) == 1
    md = (tmp_path / "r" / "compare.md").read_text()
    assert "verdict: passed" in md and LOST in md


def test_gate_refuses_a_model_that_lost_a_class(datasets: Path, tmp_path: Path) -> None:
    shipped = build_tiny_model(tmp_path / "shipped.onnx")
    worse = _degraded(shipped, tmp_path / "worse.onnx")
    with pytest.raises(TrainingError, match=f"recall of {LOST}: 1.0000 -> 0.0000"):
        compare(
            worse, shipped, _settings(datasets), split="val", out=tmp_path / "r",
            cache=tmp_path / "cache", listings=300, resamples=200,
        )  # fmt: skip
    report = json.loads((tmp_path / "r" / "compare.json").read_text())
    assert report["verdict"] == "refused"
    lost = next(c for c in report["category"]["per_class"] if c["label"] == LOST)
    assert lost["flips"] == {
        "both_right": 0,
        "shipped_only": 6,
        "candidate_only": 0,
        "both_wrong": 0,
    }
    assert lost["recall"]["diff_ci"][1] < 0
    # Only the lost class is refused on recall; its photos went elsewhere.
    assert [r for r in report["refusals"] if r.startswith("recall of")] == [
        r for r in report["refusals"] if LOST in r and r.startswith("recall of")
    ]


def test_cli_exits_1_with_the_reason(datasets: Path, tmp_path: Path) -> None:
    shipped = build_tiny_model(tmp_path / "shipped.onnx")
    worse = _degraded(shipped, tmp_path / "worse.onnx")
    env = {**os.environ, "MODQ_DATASETS_DIR": str(datasets)}
    args = ["--against", str(shipped), "--out", str(tmp_path / "r"), "--listings", "200"]
    done = subprocess.run(
        [sys.executable, "-m", "training.cli", "compare", str(worse), *args,
         "--cache", str(tmp_path / "cache"), "--resamples", "200"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "refused worse.onnx against shipped.onnx" in done.stderr
    assert f"recall of {LOST}" in done.stderr
