"""The int8 copy of the category model (`MODQ_CLASSIFIER_PRECISION=int8`): it is served only
when its provenance pins it to the fp32 file in use, and it decides like the fp32 model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modq.domain.provenance import classifier_path, int8_copy_of
from modq.errors import ConfigError
from modq.pipeline.infer import Classifier
from modq.settings import Settings
from training.transforms import eval_array


def _val_photos(datasets_dir: Path, per_category: int) -> list[tuple[Path, str]]:
    val = datasets_dir / "listings-v1" / "val"
    return [
        (path, folder.name)
        for folder in sorted(p for p in val.iterdir() if p.is_dir())
        for path in sorted(folder.glob("*.jpg"))[:per_category]
    ]


def test_int8_classifier_decides_like_fp32(shipped_model: Path, datasets_dir: Path) -> None:
    fp32 = Classifier.from_path(shipped_model, Settings())
    settings = Settings(model_path=shipped_model, classifier_precision="int8")
    int8 = Classifier.from_path(classifier_path(settings), settings)
    assert int8.contract.model_version == f"{fp32.contract.model_version}-int8"
    assert int8.contract.labels == fp32.contract.labels
    photos = _val_photos(datasets_dir, 3)
    batch = np.stack([eval_array(p, fp32.contract.preprocess) for p, _ in photos])
    a, b = fp32.predict(batch), int8.predict(batch)
    # Probabilities stay unquantised: the mismatch rule compares them with 0.0007.
    assert b.probs.dtype == np.float32 and (b.probs[b.probs > 0] < 1e-3).any()
    assert (a.probs.argmax(1) == b.probs.argmax(1)).sum() >= len(photos) - 2
    assert np.abs(a.probs - b.probs).mean() < 0.02
    assert a.heads.keys() == b.heads.keys()
    for name in a.heads:
        assert np.abs(a.heads[name] - b.heads[name]).mean() < 0.05


def test_an_int8_copy_of_another_model_is_refused(shipped_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "listings.onnx"
    shutil.copy(shipped_model, model)
    settings = Settings(model_path=model, classifier_precision="int8")
    with pytest.raises(ConfigError, match=r"missing.*training\.classifier_int8"):
        classifier_path(settings)
    shipped_copy = int8_copy_of(shipped_model)
    shutil.copy(shipped_copy, int8_copy_of(model))
    shutil.copy(f"{shipped_copy}.json", f"{int8_copy_of(model)}.json")
    assert classifier_path(settings) == int8_copy_of(model)
    model.write_bytes(model.read_bytes() + b"\0")  # a retrained fp32 model, say
    with pytest.raises(ConfigError, match="made from another version"):
        classifier_path(settings)
    assert classifier_path(settings.model_copy(update={"classifier_precision": "fp32"})) == model


def test_the_worker_refuses_to_start_without_the_int8_copy(
    shipped_model: Path, tmp_path: Path, redis_url: str
) -> None:
    """With MODQ_CLASSIFIER_PRECISION=int8, a missing copy stops `modq worker` before it
    consumes anything, with the fix named, rather than failing every batch it takes."""
    model = tmp_path / "listings.onnx"
    shutil.copy(shipped_model, model)
    env = {
        **os.environ,
        "MODQ_MODEL_PATH": str(model),
        "MODQ_BROKER_URL": redis_url,
        # int8 is opt-in since the ship gate refused it (docs/model-card.md).
        "MODQ_CLASSIFIER_PRECISION": "int8",
    }
    done = subprocess.run(
        [sys.executable, "-m", "modq", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "python -m training.classifier_int8" in done.stderr
    assert "ready" not in done.stdout + done.stderr
