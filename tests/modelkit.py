"""A tiny but real modq ONNX model, built with the `onnx` package (no torch).

Global average pooling followed by a nearest-colour-prototype classifier: a photo filled with
the prototype colour of a label is classified as that label with high confidence. Tests use
it to drive the whole pipeline with predictable outputs before (or instead of) the trained
model.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modq.domain.contract import ModelContract
from modq.domain.preprocess import PreprocessSpec

# The 15 categories of listings-v1, in the order of its categories.json.
LISTING_LABELS = [
    "fashion.tshirt", "fashion.longsleeve", "fashion.shirt", "fashion.pants", "fashion.shorts",
    "fashion.skirt", "fashion.dress", "fashion.outerwear", "fashion.shoes", "fashion.hat",
    "electronics.phone", "electronics.laptop", "food.fruit", "food.vegetables", "food.packaged",
]  # fmt: skip


def listing_labels() -> list[str]:
    return list(LISTING_LABELS)


def label_colours(labels: list[str]) -> dict[str, tuple[int, int, int]]:
    """Well-separated saturated colours, one per label."""
    colours = {}
    for i, label in enumerate(labels):
        r, g, b = colorsys.hsv_to_rgb(i / len(labels), 1.0, 1.0 if i % 2 else 0.6)
        colours[label] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def build_tiny_model(path: Path, labels: list[str] | None = None, version: str = "tiny-1") -> Path:
    labels = labels or listing_labels()
    spec = PreprocessSpec()
    colours = label_colours(labels)
    mean, std = np.array(spec.mean), np.array(spec.std)
    protos = np.stack([(np.array(colours[lbl]) - mean) / std for lbl in labels]).astype(np.float32)
    sharpness = 40.0
    weight = (2 * sharpness * protos.T).astype(np.float32)  # [3, L]
    bias = (-sharpness * (protos**2).sum(axis=1)).astype(np.float32)

    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1),
        helper.make_node("Gemm", ["embedding", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["category_probs"], axis=1),
    ]
    size = spec.input_size
    graph = helper.make_graph(
        nodes,
        "modq_tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("category_probs", TensorProto.FLOAT, ["N", len(labels)]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]),
        ],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    contract = ModelContract(model_version=version, labels=labels, preprocess=spec)
    for key, value in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
