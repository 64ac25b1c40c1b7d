"""The prohibited-items head: grafting keeps the category outputs bit-identical, the graph
computes what the fitted head computes, re-grafting replaces the head, and box crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from modq.domain.contract import ModelContract
from training import TrainingError
from training.prohibited_data import Photos, crop_square, scan_boxes, size_bucket
from training.prohibited_fit import softmax_scores
from training.prohibited_graph import DETECTOR, OUTPUT, graft

from .modelkit import listing_labels

LABELS = ["firearm", "knife", "drugs", "tobacco"]
CHANNELS = 8


def _map_model(path: Path) -> Path:
    """image → 1x1 conv → ReLU (the 'feature map') → ReduceMean = embedding → category head."""
    rng = np.random.default_rng(0)
    labels = listing_labels()
    conv = rng.standard_normal((CHANNELS, 3, 1, 1)).astype(np.float32)
    w = rng.standard_normal((CHANNELS, len(labels))).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "conv_w"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["fmap"]),
        helper.make_node("ReduceMean", ["fmap"], ["embedding"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["embedding", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["category_probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "map_model",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [
            helper.make_tensor_value_info("category_probs", TensorProto.FLOAT, ["N", len(labels)]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", CHANNELS]),
        ],
        initializer=[
            numpy_helper.from_array(conv, "conv_w"),
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.zeros(len(labels), np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    contract = ModelContract(model_version="map-1", labels=labels)
    for key, value in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(names, {"image": x})]


def test_graft_avg_max_keeps_category_outputs_and_matches_the_fitted_head(tmp_path: Path) -> None:
    base = _map_model(tmp_path / "base.onnx")
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2 * CHANNELS, len(LABELS) + 1)).astype(np.float32)
    b = rng.standard_normal(len(LABELS) + 1).astype(np.float32)
    out = tmp_path / "with-head.onnx"
    graft(base, out, w, b, LABELS, {"note": "test"}, features="avg+max")

    x = rng.standard_normal((5, 3, 224, 224)).astype(np.float32)
    before = _run(base, x, ["category_probs", "embedding"])
    cat, emb, probs = _run(out, x, ["category_probs", "embedding", OUTPUT])
    assert np.array_equal(cat, before[0]) and np.array_equal(emb, before[1])

    # The head's input is [mean, max] of the map: the same scores as softmax_scores in numpy.
    fmap = np.maximum(np.einsum("oc,nchw->nohw", _conv(base), x), 0)
    features = np.hstack([fmap.mean((2, 3)), fmap.max((2, 3))]).astype(np.float32)
    np.testing.assert_allclose(probs, softmax_scores(features, w, b, len(LABELS)), atol=1e-5)

    contract = ModelContract.from_metadata(
        ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    )
    assert contract.detectors[DETECTOR].labels == LABELS
    assert contract.training[DETECTOR] == {"note": "test"}

    # Grafting again (here the plain embedding head) replaces the head instead of adding one.
    again = tmp_path / "again.onnx"
    graft(out, again, w[:CHANNELS], b, LABELS, {"note": "avg"}, features="avg")
    nodes = onnx.load(str(again)).graph.node
    assert [n.op_type for n in nodes if n.name.startswith(DETECTOR)] == ["Gemm", "Softmax", "Slice"]
    (probs_avg,) = _run(again, x, [OUTPUT])
    np.testing.assert_allclose(
        probs_avg, softmax_scores(features[:, :CHANNELS], w[:CHANNELS], b, 4), atol=1e-5
    )


def _conv(path: Path) -> np.ndarray:
    init = {i.name: i for i in onnx.load(str(path)).graph.initializer}
    return numpy_helper.to_array(init["conv_w"])[:, :, 0, 0]


def test_graft_refuses_unknown_features(tmp_path: Path) -> None:
    base = _map_model(tmp_path / "base.onnx")
    w = np.zeros((CHANNELS, 5), np.float32)
    with pytest.raises(TrainingError, match="--features"):
        graft(base, tmp_path / "x.onnx", w, np.zeros(5, np.float32), LABELS, {}, features="tiles")


def test_box_crops(tmp_path: Path) -> None:
    root = tmp_path / "data"
    photo = root / "train" / "firearm" / "a.jpg"
    photo.parent.mkdir(parents=True)
    Image.new("RGB", (400, 200)).save(photo)
    boxes = root / "boxes" / "train" / "firearm" / "a.txt"
    boxes.parent.mkdir(parents=True)
    # a handgun, a long gun wider than the photo is high, and a cigarette (class 3)
    boxes.write_text("0 0.1 0.1 0.05 0.1\n1 0.5 0.5 0.9 0.3\n3 0.9 0.9 0.02 0.02\nbad line\n")
    crops = scan_boxes(root, "train", Photos([photo], ["firearm"]), LABELS)
    assert [c.label for c in crops] == ["firearm"] * 4 + ["tobacco"] * 2
    img = Image.open(photo)
    for crop in crops:
        part = crop_square(img, crop.box, crop.context)
        assert part.width == part.height <= 200
    # The handgun (20 px tall) with context 1.25 is a 25 px square clipped to the corner.
    assert crop_square(img, crops[0].box, 1.25).size == (25, 25)
    assert size_bucket(None) == "no boxes" and size_bucket(0.5).startswith("product")
    assert size_bucket(0.01).startswith("scene")
