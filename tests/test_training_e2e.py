"""A tiny real training run: prepare → train → evaluate → export → the worker gives a verdict.

A few real listings-v1 photos per category are copied to a temporary folder; the run trains
one short epoch per phase, so the model is poor, but every file and contract is the real one.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from modq.domain.contract import ModelContract
from modq.domain.events import ListingEvent
from modq.domain.preprocess import preprocess
from modq.domain.verdicts import PhotoResult
from modq.pipeline.decode import decode_image
from modq.pipeline.infer import Classifier
from modq.policy.policy import Policy
from modq.settings import DEFAULT_POLICY, Settings
from training.cli import main


def tiny_dataset(source: Path, dest: Path, n_train: int, n_val: int) -> Path:
    """Copy the first photos of each category (skipping byte-identical ones)."""
    for split, n in (("train", n_train), ("val", n_val)):
        for class_dir in sorted((source / split).iterdir()):
            (dest / split / class_dir.name).mkdir(parents=True)
            for photo in sorted(class_dir.glob("*.jpg"))[:n]:
                shutil.copy(photo, dest / split / class_dir.name / photo.name)
    shutil.copy(source / "categories.json", dest / "categories.json")
    return dest


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_tiny_training_run_ships_a_model_the_worker_uses(
    datasets_dir: Path, tmp_path: Path
) -> None:
    data = tiny_dataset(datasets_dir / "listings-v1", tmp_path / "data", n_train=5, n_val=2)
    out = tmp_path / "run"
    policy = tmp_path / "policy.toml"
    shutil.copy(DEFAULT_POLICY, policy)
    before = tomllib.loads(policy.read_text())
    shipped = tmp_path / "models" / "modq-listings.onnx"

    report = _invoke("prepare", "--data", str(data), "--out", str(out), "--exclude-leaked")
    assert "fashion.tshirt" in report and "data hash" in report
    _invoke(
        "train", "--out", str(out), "--aug-views", "1", "--head-epochs", "1",
        "--finetune-epochs", "1", "--holdout", "0.4", "--seed", "3",
    )  # fmt: skip
    assert (out / "checkpoints" / "best.pt").is_file() and (
        out / "checkpoints" / "last.pt"
    ).is_file()
    _invoke("evaluate", "--out", str(out))
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert 0.0 <= evaluation["val"]["top1"] <= 1.0
    assert len(evaluation["val"]["per_class"]) == 15
    assert (out / "confusion.png").stat().st_size > 0
    confusion = json.loads((out / "confusion.json").read_text())["rows_true_cols_predicted"]
    assert np.asarray(confusion).sum() == evaluation["val"]["photos"]
    _invoke(
        "export", "--out", str(out), "--ship-to", str(shipped), "--policy", str(policy),
        "--parity-photos", "4",
    )  # fmt: skip

    # The shipped file, read the way the worker reads it.
    sess = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    contract = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map)
    manifest = json.loads((out / "manifest.json").read_text())
    assert contract.labels == manifest["labels"] and len(contract.labels) == 15
    assert contract.training["data_hash"] == manifest["data_hash"]
    threshold = evaluation["mismatch"]["match_threshold"]
    assert contract.training["thresholds"]["match_threshold"] == threshold

    # The policy file: only [category].match_threshold changed.
    after = tomllib.loads(policy.read_text())
    assert after["category"]["match_threshold"] == pytest.approx(threshold)
    after["category"]["match_threshold"] = before["category"]["match_threshold"]
    assert after == before

    # The worker's classifier and policy give a verdict on a real photo.
    settings = Settings(
        model_path=shipped, policy_path=policy, providers="cpu", classifier_precision="fp32"
    )
    classifier = Classifier.from_path(shipped, settings)
    photo = next((data / "val" / "food.fruit").glob("*.jpg"))
    spec = classifier.contract.preprocess
    batch = preprocess(decode_image(photo.read_bytes(), spec, settings.max_image_pixels), spec)[
        None
    ]
    probs = classifier.predict(batch).probs
    assert probs.shape == (1, 15)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    event = ListingEvent(listing_id="L1", declared_category="food.fruit", images=[str(photo)])
    decision = Policy.load(policy).decide_category(
        event, [PhotoResult(index=0, ref=str(photo))], probs, classifier.contract.labels
    )
    assert decision.decision in ("approve", "review", "reject")
    assert set(decision.scores) == set(contract.labels)
