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

from .modelkit import build_tiny_model, listing_labels

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


def _photo(path: Path, rgb: tuple[int, int, int], i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shade = tuple(min(255, c + 3 * i) for c in rgb)
    Image.new("RGB", (64 + i, 64), shade).save(path, quality=95)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """prohibited-v2 and listings-v1 look-alikes of flat colours: one colour per label."""
    root = tmp_path_factory.mktemp("sets")
    colours = {"firearm": (200, 0, 0), "knife": (0, 200, 0), "drugs": (0, 0, 200),
               "tobacco": (200, 200, 0), "benign": (90, 90, 90)}  # fmt: skip
    for split, n in (("train", 10), ("val", 3)):
        for label, rgb in colours.items():
            for i in range(n):
                _photo(root / "prohibited-v2" / split / label / f"{i}.jpg", rgb, i)
        for j, label in enumerate(listing_labels()[:3]):
            for i in range(n):
                _photo(root / "listings-v1" / split / label / f"{i}.jpg", (30 * j, 120, 160), i)
    return root


def test_head_records_its_recipe_and_oof_scores_that_a_refit_rebuilds(
    tiny_sets: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from training.prohibited_cli import add_prohibited_head, prohibited_oof
    from training.prohibited_oof import load_oof

    base = build_tiny_model(tmp_path / "base.onnx")
    data = ["--data", str(tiny_sets / "prohibited-v2"), "--benign", str(tiny_sets / "listings-v1")]
    common = [*data, "--cache", str(tmp_path / "cache"), "--oof-dir", str(tmp_path / "oof")]
    out = tmp_path / "with-head.onnx"
    policy = Path("modq/assets/policies/default.toml")
    result = CliRunner().invoke(
        add_prohibited_head,
        ["--model", str(base), "--out", str(out), *common, "--hard-weight", "3",
         "--features", "avg", "--scene-fpr", "0.1", "--policy", str(policy),
         "--policy-out", str(tmp_path / "p.toml")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    contract = ModelContract.from_metadata(
        ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    )
    assert contract.model_version.startswith("tiny-1-p") and len(contract.model_version) == 15
    assert contract.training[DETECTOR]["recipe"]["hard_weight"] == 3.0
    oof = load_oof(out, tmp_path / "oof")
    assert oof is not None
    rows, keys, scores = oof
    assert keys == [f"prohibited.{lb}" for lb in LABELS]
    assert len(rows) == 5 * 10 + 3 * 10 and scores.shape == (80, 4)
    assert "prohibited-v2/train/knife/0.jpg" in rows

    # The file's own recipe, replayed, gives the same head: the gate finds the same scores.
    (tmp_path / "oof").joinpath(next(p.name for p in (tmp_path / "oof").iterdir())).unlink()
    result = CliRunner().invoke(prohibited_oof, ["--model", str(out), *common])
    assert result.exit_code == 0, result.output
    again = load_oof(out, tmp_path / "oof")
    assert again is not None and np.array_equal(again[2], scores)
    result = CliRunner().invoke(prohibited_oof, ["--model", str(out), *common])
    assert result.exit_code == 0 and "already in" in result.output

    # A head the recipe does not give (here: nudged weights) is refused, not guessed at.
    proto = onnx.load(str(out))
    bias = next(t for t in proto.graph.initializer if t.name == f"{DETECTOR}_b")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.5, bias.name))
    onnx.save(proto, str(tmp_path / "nudged.onnx"))
    result = CliRunner().invoke(prohibited_oof, ["--model", str(tmp_path / "nudged.onnx"), *common])
    assert result.exit_code != 0 and "gives another head" in str(result.exception)
