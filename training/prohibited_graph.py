"""The prohibited head inside the shipped ONNX graph: feature taps, and grafting the fitted
linear softmax (ReduceMax → Concat → Gemm → Softmax → Slice) as output `prohibited_probs`,
replacing any earlier head. The category outputs are not touched (training/prohibited.py checks
they stay bit-identical)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from modq.domain.contract import DetectorHead, ModelContract
from training import TrainingError

DETECTOR = "prohibited"
OUTPUT = "prohibited_probs"
EMBEDDING = "embedding"

F32 = npt.NDArray[np.float32]


FEATURES = ("avg", "avg+max")
DEFAULT_FEATURES = "avg+max"
FEATURES_OUT = f"{DETECTOR}_features_out"  # only in the copy `feature_model` writes
_HEAD_TENSORS = (
    "features_out",
    "w",
    "b",
    "logits",
    "softmax",
    "starts",
    "ends",
    "axes",
    "map_max",
    "features",
)


def _strip_head(graph: onnx.GraphProto) -> None:
    """Remove a previous head, so re-running replaces it instead of stacking a second one."""
    ours = {f"{DETECTOR}_{s}" for s in _HEAD_TENSORS}
    keep = [n for n in graph.node if not set(n.output) & (ours | {OUTPUT})]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name not in ours]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    outs = [o for o in graph.output if o.name not in ours | {OUTPUT}]
    del graph.output[:]
    graph.output.extend(outs)


def _add_features(graph: onnx.GraphProto, features: str) -> str:
    """Nodes computing the head's input; returns its tensor name.

    `avg` is the pooled `embedding` itself. `avg+max` adds the spatial max of the same
    feature map (the input of the ReduceMean that pools `embedding`): an object that fills one
    cell of the 7x7 map moves the max although it barely moves the mean. Both only read
    tensors the category head already computes, so category outputs cannot change.
    """
    if features not in FEATURES:
        raise TrainingError(f"--features must be one of {FEATURES}, not {features!r}")
    if features == "avg":
        return EMBEDDING
    pool = next((n for n in graph.node if EMBEDDING in n.output), None)
    if pool is None or pool.op_type not in ("ReduceMean", "GlobalAveragePool"):
        raise TrainingError(f"'{EMBEDDING}' is not a pooled feature map: cannot add its max")
    graph.node.extend(
        [
            helper.make_node("ReduceMax", [pool.input[0]], [f"{DETECTOR}_map_max"], axes=[2, 3],
                             keepdims=0, name=f"{DETECTOR}_map_max_op"),
            helper.make_node("Concat", [EMBEDDING, f"{DETECTOR}_map_max"],
                             [f"{DETECTOR}_features"], axis=1, name=f"{DETECTOR}_concat"),
        ]
    )  # fmt: skip
    return f"{DETECTOR}_features"


def feature_model(model: Path, features: str, out: Path) -> Path:
    """A copy of `model` whose extra output `prohibited_features` is the head's input."""
    proto = onnx.load(str(model))
    _strip_head(proto.graph)
    return save_with_features_out(proto, _add_features(proto.graph, features), out)


def save_with_features_out(proto: onnx.ModelProto, tensor: str, out: Path) -> Path:
    """Save `proto` to `out` with `tensor` (the head's input) as extra output `FEATURES_OUT`."""
    proto.graph.node.append(
        helper.make_node("Identity", [tensor], [FEATURES_OUT], name=f"{DETECTOR}_fo")
    )
    proto.graph.output.append(helper.make_tensor_value_info(FEATURES_OUT, TensorProto.FLOAT, None))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file() or out.read_bytes() != proto.SerializeToString():
        onnx.save(proto, str(out))
    return out


def head_version(version: str, w: F32, b: F32, features: str) -> str:
    """The category model's version plus `-p<digest of the head>`: verdicts made with another
    prohibited head carry another version (backfill --stale finds them), while refitting
    the same head gives the same one."""
    digest = hashlib.sha256(w.tobytes() + b.tobytes() + features.encode()).hexdigest()[:7]
    return f"{re.sub(r'-p[0-9a-f]{7}$', '', version)}-p{digest}"


def graft(
    model: Path,
    out: Path,
    w: F32,
    b: F32,
    labels: list[str],
    info: dict[str, Any],
    features: str = DEFAULT_FEATURES,
) -> None:
    """Add [features →] Gemm → Softmax → Slice(`labels`) as output `prohibited_probs`."""
    proto = onnx.load(str(model))
    graph = proto.graph
    if EMBEDDING not in {o.name for o in graph.output}:
        raise TrainingError(f"{model} has no '{EMBEDDING}' output to put the head on")
    _strip_head(graph)
    head_input = _add_features(graph, features)

    n = len(labels)
    graph.initializer.extend(
        [
            numpy_helper.from_array(w.T.copy(), f"{DETECTOR}_w"),
            numpy_helper.from_array(b, f"{DETECTOR}_b"),
            numpy_helper.from_array(np.array([0], np.int64), f"{DETECTOR}_starts"),
            numpy_helper.from_array(np.array([n], np.int64), f"{DETECTOR}_ends"),
            numpy_helper.from_array(np.array([1], np.int64), f"{DETECTOR}_axes"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node(
                "Gemm", [head_input, f"{DETECTOR}_w", f"{DETECTOR}_b"], [f"{DETECTOR}_logits"],
                transB=1, name=f"{DETECTOR}_gemm",
            ),
            helper.make_node(
                "Softmax", [f"{DETECTOR}_logits"], [f"{DETECTOR}_softmax"], axis=1,
                name=f"{DETECTOR}_softmax_op",
            ),
            helper.make_node(
                "Slice",
                [f"{DETECTOR}_{s}" for s in ("softmax", "starts", "ends", "axes")],
                [OUTPUT], name=f"{DETECTOR}_slice",
            ),
        ]
    )  # fmt: skip
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", n]))

    meta = {p.key: p.value for p in proto.metadata_props}
    contract = ModelContract.from_metadata(meta, str(model))
    detectors = {**contract.detectors, DETECTOR: DetectorHead(output=OUTPUT, labels=labels)}
    training = {**contract.training, DETECTOR: info}
    updated = contract.model_copy(
        update={
            "detectors": detectors,
            "training": training,
            "model_version": head_version(contract.model_version, w, b, features),
        }
    )
    for prop in proto.metadata_props:
        if prop.key in updated.to_metadata():
            prop.value = updated.to_metadata()[prop.key]
    onnx.checker.check_model(proto)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
