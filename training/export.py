"""`export`: the trained network as the ONNX file the worker runs, with its contract.

Outputs `category_probs` (softmax inside the graph) and `embedding` (pooled backbone
features, for heads grafted on later), a dynamic batch axis, opset 17, and the
`ModelContract` in the metadata. A parity check on real photos against PyTorch refuses a
file that differs by more than 1e-4. `ship` replaces the shipped model only when the new
one is better on the validation photos.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn

from modq.domain.contract import ModelContract
from modq.domain.preprocess import PreprocessSpec
from modq.domain.taxonomy import macros
from training import TrainingError
from training.backbones import Net
from training.transforms import eval_array

OPSET = 17
PARITY_TOLERANCE = 1e-4
ARCH_TAGS = {
    "efficientnet-lite0": "efl0",
    "resnet18": "r18",
    "resnet34": "r34",
    "resnet50": "r50",
    "mobilenet_v3_large": "mnv3l",
}


class Exportable(nn.Module):
    """image → (category_probs, embedding)."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.net.embed(image)
        return torch.softmax(self.net.fc(embedding), dim=1), embedding


def weights_hash(net: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def model_version(prefix: str, arch: str, net: nn.Module, when: dt.date | None = None) -> str:
    day = (when or dt.date.today()).strftime("%Y%m%d")
    return f"{prefix}-{ARCH_TAGS.get(arch, arch)}-{day}-{weights_hash(net)[:7]}"


def to_onnx(net: Net, contract: ModelContract, path: Path) -> Path:
    """Write `net` as ONNX with the contract in its metadata."""
    module = Exportable(net).eval()  # eval on the wrapper: export restores its mode after
    size = contract.preprocess.input_size
    dummy = torch.zeros(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"image": {0: "batch"}, "category_probs": {0: "batch"}, "embedding": {0: "batch"}}
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about constants
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            module,
            (dummy,),
            str(raw),
            dynamo=False,
            opset_version=OPSET,
            input_names=[contract.input_name],
            output_names=[contract.output_name, "embedding"],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        model = onnx.load(str(raw))
    model.producer_name = "modq-train"
    model.doc_string = f"modq category classifier {contract.model_version}"
    set_metadata(model, contract.to_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def module_session(
    module: nn.Module, input_size: int, path: Path, outputs: tuple[str, ...] = ("features",)
) -> ort.InferenceSession:
    """`module` (one image input, dynamic batch) as an ONNX Runtime session.

    Used for the bulk passes (feature cache, evaluation): on this CPU ONNX Runtime runs the
    network 2-4 times faster than eager PyTorch, and it is the runtime the worker uses.
    """
    module = module.eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=list(outputs),
            dynamic_axes={"image": {0: "batch"}},
        )
    return session(path)


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


def session(path: Path, threads: int = 2) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def parity(net: Net, path: Path, photos: list[Path], spec: PreprocessSpec) -> dict[str, float]:
    """Max abs difference between PyTorch and ONNX Runtime on real photos; raises above 1e-4."""
    if not photos:
        raise TrainingError("parity check needs at least one photo")
    batch = np.stack([eval_array(p, spec) for p in photos])
    with torch.inference_mode():
        probs, emb = Exportable(net).eval()(torch.from_numpy(batch))
    sess = session(path)
    ort_probs, ort_emb = sess.run(["category_probs", "embedding"], {"image": batch})
    diffs = {
        "photos": float(len(photos)),
        "category_probs": float(np.abs(ort_probs - probs.numpy()).max()),
        "embedding": float(np.abs(ort_emb - emb.numpy()).max()),
    }
    worst = max(diffs["category_probs"], diffs["embedding"])
    if worst > PARITY_TOLERANCE:
        raise TrainingError(
            f"ONNX export does not match PyTorch on {len(photos)} real photos: max abs difference "
            f"{worst:.2e} > {PARITY_TOLERANCE:.0e} (category_probs {diffs['category_probs']:.2e}, "
            f"embedding {diffs['embedding']:.2e})"
        )
    return diffs


def onnx_probs(path: Path, photos: list[Path], batch_size: int = 32) -> npt.NDArray[np.float32]:
    """Category probabilities of an ONNX model file, preprocessing from its own contract."""
    sess = session(path)
    contract = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map, str(path))
    out = []
    for start in range(0, len(photos), batch_size):
        batch = np.stack(
            [eval_array(p, contract.preprocess) for p in photos[start : start + batch_size]]
        )
        out.append(sess.run([contract.output_name], {contract.input_name: batch})[0])
    return np.concatenate(out).astype(np.float32)


def ship(
    candidate: Path,
    target: Path,
    photos: list[Path],
    labels: list[str],
    y: npt.NDArray[np.int64],
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Copy `candidate` to `target` when it beats the model already there on the val photos."""
    new = onnx_probs(candidate, photos)
    new_score = _score(new, y, labels)
    result: dict[str, Any] = {"candidate": new_score, "target": str(target)}
    if target.is_file() and not force:
        try:
            old_contract = ModelContract.from_metadata(
                session(target).get_modelmeta().custom_metadata_map, str(target)
            )
        except Exception as exc:  # an unreadable old model is replaced: say so
            result["previous"] = f"unreadable ({exc})"
        else:
            if old_contract.labels != labels:
                raise TrainingError(
                    f"{target} has other labels than the new model; compare by hand and pass "
                    "--force to replace it"
                )
            old_score = _score(onnx_probs(target, photos), y, labels)
            result["previous"] = old_score
            if (new_score["top1"], new_score["macro_category_accuracy"]) <= (
                old_score["top1"],
                old_score["macro_category_accuracy"],
            ):
                result["shipped"] = False
                return result
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(candidate, target)
    result["shipped"] = True
    return result


def _score(
    probs: npt.NDArray[np.float32], y: npt.NDArray[np.int64], labels: list[str]
) -> dict[str, float]:
    macro = np.array(macros(labels))
    pred = probs.argmax(1)
    return {
        "top1": float((pred == y).mean()),
        "macro_category_accuracy": float((macro[pred] == macro[y]).mean()),
    }
