"""ONNX Runtime inference: one session per worker process, chosen provider logged once.

The session is created lazily in the process that runs the batches (after any fork), with
full graph optimisation. All heads of the graph (categories and detector heads) come out of
one `run` call per batch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from modq.detectors.base import open_session
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


def session_threads(setting: int, sessions: int) -> int:
    """`intra_op_threads`, or when 0 (auto) this process's cores divided by `sessions`."""
    if setting > 0:
        return setting
    return max(1, len(os.sched_getaffinity(0)) // max(1, sessions))


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
        if not Path(path).is_file():
            raise ConfigError(f"model file not found: {path} (set MODQ_MODEL_PATH)")
        providers = choose_providers(settings.providers, settings.gpu)
        session = open_session(path, providers, settings.intra_op_threads)
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
