"""ONNX export: the file matches PyTorch on real photos, and the check can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modq.domain.contract import ModelContract
from training import TrainingError
from training.backbones import build
from training.export import OPSET, PARITY_TOLERANCE, model_version, parity, to_onnx
from training.transforms import eval_array

LABELS = ["electronics.laptop", "electronics.phone", "fashion.dress", "food.fruit"]


@pytest.fixture(scope="module")
def photos(datasets_dir: Path) -> list[Path]:
    val = datasets_dir / "listings-v1" / "val"
    return [p for label in LABELS for p in sorted((val / label).glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    backbone = build("efficientnet-lite0", len(LABELS))
    net = backbone.net.eval()
    contract = ModelContract(
        model_version=model_version("test", backbone.arch, net),
        labels=LABELS,
        preprocess=backbone.spec,
        training={"note": "untrained head"},
    )
    path = to_onnx(net, contract, tmp_path_factory.mktemp("export") / "model.onnx")
    return net, path


def test_export_matches_pytorch_on_real_photos(
    exported: tuple[torch.nn.Module, Path], photos: list[Path]
) -> None:
    net, path = exported
    diffs = parity(net, path, photos, ModelContract.from_metadata(_meta(path)).preprocess)
    assert diffs["photos"] == len(photos)
    assert diffs["category_probs"] <= PARITY_TOLERANCE
    assert diffs["embedding"] <= PARITY_TOLERANCE


def test_exported_graph_follows_the_worker_contract(
    exported: tuple[torch.nn.Module, Path], photos: list[Path]
) -> None:
    _, path = exported
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    contract = ModelContract.from_metadata(_meta(path))
    assert contract.labels == LABELS and contract.model_version.startswith("test-efl0-")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["category_probs", "embedding"]
    for n in (1, 3):  # dynamic batch axis
        batch = np.stack([eval_array(p, contract.preprocess) for p in photos[:n]])
        probs, emb = sess.run(None, {"image": batch})
        assert probs.shape == (n, len(LABELS)) and emb.shape == (n, 1280)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_parity_check_refuses_a_model_that_differs(
    exported: tuple[torch.nn.Module, Path], photos: list[Path]
) -> None:
    net, path = exported
    spec = ModelContract.from_metadata(_meta(path)).preprocess
    state = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        with torch.no_grad():
            net.fc.bias[0] += 0.01  # far below anything visible in accuracy
        with pytest.raises(TrainingError, match="does not match PyTorch"):
            parity(net, path, photos[:2], spec)
    finally:
        net.load_state_dict(state)


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
