"""The ship gate (`modq-train compare`): it passes a model identical to the shipped one and
refuses, naming the class, one that lost a class; scores are cached per model file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from modq.policy.policy import Policy
from modq.settings import Settings
from tests.modelkit import build_tiny_model, listing_labels
from tests.photokit import colour_jpeg
from training import TrainingError
from training.compare import compare
from training.gate_scores import labelled_photos
from training.gate_ship import bump_version, ship_candidate, write_candidate_policy
from training.prohibited_graph import graft
from training.prohibited_oof import save_oof

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


# ---- out-of-fold scores (--split val+oof) and shipping on a pass --------------------------


def _with_head(base: Path, out: Path, benign_bias: float) -> Path:
    """The tiny model plus a prohibited head on its 3-d embedding that scores benign."""
    w = np.zeros((3, len(HEAD_LABELS) + 1), np.float32)
    b = np.array([0, 0, 0, 0, benign_bias], np.float32)
    graft(base, out, w, b, HEAD_LABELS, {"labels": HEAD_LABELS}, features="avg")
    return out


HEAD_LABELS = ["firearm", "knife", "drugs", "tobacco"]


@pytest.fixture(scope="module")
def with_train(datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`datasets` plus listings-v1 train and prohibited-v2 knife/benign photos, both splits."""
    root = tmp_path_factory.mktemp("withtrain")
    shutil.copytree(datasets / "listings-v1", root / "listings-v1")
    for label in listing_labels():
        folder = root / "listings-v1" / "train" / label
        folder.mkdir(parents=True)
        for i in range(3):
            (folder / f"t{i}.jpg").write_bytes(colour_jpeg(label, (220 + 10 * i, 190)))
    for split, n in (("train", 8), ("val", 2)):
        for label in ("knife", "benign"):
            folder = root / "prohibited-v2" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}.jpg").write_bytes(colour_jpeg("food.fruit", (200 + i, 200)))
    return root


def _oof(model: Path, root: Path, folder: Path, knife_score: float) -> None:
    """Out-of-fold scores: every train photo benign-looking except knives at `knife_score`."""
    photos = labelled_photos(root, ["train"])
    scores = np.zeros((len(photos.paths), 4), np.float32)
    scores[np.array(photos.labels) == "knife", 1] = knife_score
    save_oof(model, photos.paths, [f"prohibited.{lb}" for lb in HEAD_LABELS], scores, folder)


def test_gate_counts_train_photos_by_their_out_of_fold_scores(
    with_train: Path, tmp_path: Path
) -> None:
    base = build_tiny_model(tmp_path / "base.onnx")
    shipped = _with_head(base, tmp_path / "shipped.onnx", 5.0)
    candidate = _with_head(base, tmp_path / "candidate.onnx", 5.001)  # other weights, same calls
    oof = tmp_path / "oof"

    def run(split: str) -> dict[str, Any]:
        return compare(
            candidate, shipped, _settings(with_train), split=split, out=tmp_path / "r",
            cache=tmp_path / "cache", listings=200, resamples=200, oof_dir=oof,
        )  # fmt: skip

    # Without out-of-fold scores there is nothing honest to say about train photos.
    with pytest.raises(TrainingError, match="no out-of-fold scores"):
        run("val+oof")
    _oof(shipped, with_train, oof, 0.99)
    _oof(candidate, with_train, oof, 0.0)
    # In-sample (train+val) both models flag nothing: the gate cannot tell them apart.
    report = run("train+val")
    assert report["verdict"] == "passed"
    # Out of fold the shipped head flags all 8 train knives and the candidate none: refused.
    with pytest.raises(TrainingError, match=r"own-label flags of knife: 0\.8000 -> 0\.0000"):
        run("val+oof")
    report = json.loads((tmp_path / "r" / "compare.json").read_text())
    assert report["out_of_fold"].startswith(f"{8 + 8 + 45} of {8 + 8 + 45} train photos")
    assert "category outputs identical on train" in report["out_of_fold"]
    knife = report["prohibited"]["own_label"][0]
    assert knife["n"] == 10 and knife["flips"]["shipped_only"] == 8


def test_cli_ships_only_what_passes(datasets: Path, tmp_path: Path) -> None:
    shipped = build_tiny_model(tmp_path / "shipped.onnx")
    worse = _degraded(shipped, tmp_path / "worse.onnx")
    target = tmp_path / "assets" / "model.onnx"
    target.parent.mkdir()
    shutil.copyfile(shipped, target)
    env = {**os.environ, "MODQ_DATASETS_DIR": str(datasets)}
    common = ["--against", str(shipped), "--out", str(tmp_path / "r"), "--listings", "100",
              "--cache", str(tmp_path / "cache"), "--resamples", "100",
              "--ship-to", str(target)]  # fmt: skip
    refused = subprocess.run(
        [sys.executable, "-m", "training.cli", "compare", str(worse), *common],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert target.read_bytes() == shipped.read_bytes()  # a refused candidate is never copied
    same = build_tiny_model(tmp_path / "same.onnx", version="tiny-2")
    passed = subprocess.run(
        [sys.executable, "-m", "training.cli", "compare", str(same), *common],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert passed.returncode == 0, passed.stderr
    assert target.read_bytes() == same.read_bytes()


def test_candidate_policy_bumps_the_version(tmp_path: Path) -> None:
    policy = Path("modq/assets/policies/default.toml")
    out = write_candidate_policy(
        policy, tmp_path / "p.toml", "2031-01-02",
        {lb: {"review": 0.25, "reject": 0.75} for lb in HEAD_LABELS}, 0.001,
    )  # fmt: skip
    new, old = Policy.load(out), Policy.load(policy)
    assert new.version == "2031-01-02.1" and new.version != old.version
    assert new.labels["prohibited.knife"].review == 0.25
    assert new.category.match_threshold == 0.001
    assert bump_version("2031-01-02.3", "2031-01-02") == "2031-01-02.4"
    # Shipping a policy under the shipped version is refused: verdicts record the version.
    with pytest.raises(TrainingError, match="bump it"):
        copy = Path(shutil.copyfile(policy, tmp_path / "shipped.toml"))
        ship_candidate(tmp_path / "m.onnx", tmp_path / "m.onnx", policy, copy)
