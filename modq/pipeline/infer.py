"""ONNX Runtime inference: one session per worker process, chosen provider logged once.

The session is created lazily in the process that runs the batches (after any fork), with
full graph optimisation. All heads of the graph (categories and detector heads) come out of
one `run` call per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from modq.domain.contract import ModelContract
from modq.errors import ConfigError, InferenceError, ModelContractError
from modq.settings import Settings

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Prediction:
    """Category probabilities [N, L] plus one score matrix per detector head."""

    probs: FloatArray
    heads: dict[str, FloatArray]


def choose_providers(setting: str, gpu: int | None) -> list[Any]:
    """Providers in preference order for the `providers` setting, checked against this ORT build."""
    available = set(ort.get_available_providers())
    cuda_opts = {"device_id": gpu or 0}
    cuda = ("CUDAExecutionProvider", cuda_opts)
    trt = ("TensorrtExecutionProvider", {**cuda_opts, "trt_fp16_enable": True})
    wanted: list[Any]
    if setting == "cpu":
        wanted = []
    elif setting == "tensorrt":
        wanted = [trt, cuda]
    elif setting == "cuda":
        wanted = [cuda]
    else:
        wanted = [cuda] if "CUDAExecutionProvider" in available else []
    missing = [name for name, _ in wanted if name not in available]
    if missing:
        raise ConfigError(
            f"providers={setting!r} needs {', '.join(missing)}, but this onnxruntime build offers "
            f"{sorted(available)}; install onnxruntime-gpu (see docs/deployment.md)"
        )
    return [*wanted, "CPUExecutionProvider"]


def _open(path: Path, opts: ort.SessionOptions, providers: list[Any]) -> ort.InferenceSession:
    if not Path(path).is_file():
        raise ConfigError(f"model file not found: {path} (set MODQ_MODEL_PATH)")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own untyped errors for bad files
        raise ModelContractError(f"cannot load ONNX model {path}: {exc}") from exc


class Classifier:
    def __init__(self, session: ort.InferenceSession, contract: ModelContract) -> None:
        self.session = session
        self.contract = contract
        names = {o.name for o in session.get_outputs()}
        wanted = [contract.output_name, *(h.output for h in contract.detectors.values())]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ModelContractError(f"model lacks outputs named in its contract: {missing}")
        self._outputs = wanted

    @classmethod
    def from_path(cls, path: Path, settings: Settings) -> Classifier:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if settings.intra_op_threads:
            opts.intra_op_num_threads = settings.intra_op_threads
        providers = choose_providers(settings.providers, settings.gpu)
        session = _open(path, opts, providers)
        contract = ModelContract.from_metadata(
            session.get_modelmeta().custom_metadata_map, str(path)
        )
        log.info(
            "model %s (%d labels) from %s on %s",
            contract.model_version,
            len(contract.labels),
            path,
            session.get_providers()[0],
        )
        return cls(session, contract)

    def predict(self, batch: FloatArray) -> Prediction:
        try:
            outputs = self.session.run(self._outputs, {self.contract.input_name: batch})
        except Exception as exc:  # onnxruntime's errors share no public base class
            raise InferenceError(
                f"ONNX Runtime failed on a batch of {len(batch)}: {type(exc).__name__}: {exc}"
            ) from exc
        probs = np.asarray(outputs[0], dtype=np.float32)
        if not self.contract.output_is_probability:
            shifted = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
        heads = {
            name: np.asarray(out, dtype=np.float32)
            for name, out in zip(self.contract.detectors, outputs[1:], strict=True)
        }
        return Prediction(probs=probs, heads=heads)
