"""Photo loading sized to what each photo's category needs, and concurrent model calls.

- A photo is decoded (JPEG draft mode) at the shorter side that the classifier and the
  detectors the policy enables *for its declared category* need: 224-256 px by default,
  736 px only where OCR (contacts) is switched on. Without a category every detector counts.
- PDQ hashes come from their own fixed-size decode of the photo's bytes
  (`modq.pipeline.decode.hash_photo`), so they do not depend on the decode size chosen here
  (docs/banned-content.md).
- Detectors that can (`prepare`) do their per-photo preprocessing on the loading threads,
  next to decoding, and their model runs on `Runtime.infer_pool` while the classifier runs
  on the calling thread: two ONNX sessions in parallel instead of one after the other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from modq.detectors.base import Detector, Result, as_detector_error
from modq.detectors.hashing import PhotoHash
from modq.domain.preprocess import preprocess
from modq.errors import PhotoError
from modq.pipeline.decode import decode_image, photo_hash
from modq.pipeline.infer import FloatArray, Prediction
from modq.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@runtime_checkable
class PreparingDetector(Protocol):
    """A detector whose per-photo preprocessing can run apart from its batched model call."""

    name: str

    def prepare(self, img: Image.Image) -> Any: ...

    def score_prepared(self, items: Sequence[Any]) -> list[Result]: ...


@dataclass
class Loaded:
    key: int
    ref: str
    array: FloatArray | None
    image: Image.Image | None
    error: PhotoError | None
    fetch_ms: float
    decode_ms: float
    pdq: PhotoHash | None = None
    # Detector name -> its prepared input for this photo, or the exception preparing raised.
    prepared: dict[str, Any] = field(default_factory=dict)


def enabled_detectors(rt: Runtime, category: str | None) -> list[Detector]:
    rules = rt.policy.detector_rules
    return [d for d in rt.detectors if category is None or rules.enabled(d.name, category)]


def decode_side(rt: Runtime, category: str | None) -> int:
    """Shorter side to decode at: the classifier's resize or what an enabled detector needs."""
    needs = [d.min_side for d in enabled_detectors(rt, category)]
    return max([rt.classifier.contract.preprocess.resize, *needs])


def load_photo(key: int, ref: str, rt: Runtime, category: str | None) -> Loaded:
    """Fetch, decode at `decode_side`, model input, PDQ and detector inputs of one photo."""
    spec = rt.classifier.contract.preprocess
    t0 = t1 = time.perf_counter()
    try:
        data = rt.read(ref)
        t1 = time.perf_counter()
        decode_spec = spec.model_copy(update={"resize": decode_side(rt, category)})
        image = decode_image(data, decode_spec, rt.settings.max_image_pixels)
        array = preprocess(image, spec)
    except PhotoError as exc:
        # A failed fetch still took time (a timeout, retries): record it, not 0.
        now = time.perf_counter()
        fetch_end = t1 if t1 > t0 else now
        return Loaded(key, ref, None, None, exc, (fetch_end - t0) * 1e3, (now - fetch_end) * 1e3)
    t2 = time.perf_counter()
    loaded = Loaded(key, ref, array, image, None, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
    if rt.banks is not None:
        # The hash of the bytes (issue 13): never dependent on the detector set or the model's
        # decode size; taken from `image` only where that is the same thing.
        try:
            loaded.pdq = photo_hash(image, data, rt.settings.max_image_pixels)
        except Exception:  # a hash failure only skips the bank check for this photo
            log.warning("PDQ hash failed for %s", ref, exc_info=True)
    for detector in enabled_detectors(rt, category):
        if isinstance(detector, PreparingDetector):
            try:
                loaded.prepared[detector.name] = detector.prepare(image)
            except Exception as exc:
                loaded.prepared[detector.name] = as_detector_error(detector.name, exc)
    return loaded


def _run_detector(detector: Detector, chunk: Sequence[Loaded], picked: list[int]) -> list[Result]:
    if isinstance(detector, PreparingDetector):
        return detector.score_prepared([chunk[i].prepared[detector.name] for i in picked])
    return detector.score([img for i in picked if (img := chunk[i].image) is not None])


def score_chunk(
    chunk: Sequence[Loaded], rt: Runtime, categories: Sequence[str] | None
) -> tuple[Prediction, list[list[tuple[Detector, int, Result]]]]:
    """The classifier on this thread, every detector on `rt.infer_pool` at the same time.

    Returns the prediction and, per detector, (detector, position in chunk, result) rows.
    """
    runs: list[tuple[Detector, list[int], Future[list[Result]] | list[Result]]] = []
    for detector in rt.detectors:
        picked = [
            i
            for i, item in enumerate(chunk)
            if item.image is not None
            and (
                categories is None
                or rt.policy.detector_rules.enabled(detector.name, categories[item.key])
            )
        ]
        if isinstance(detector, PreparingDetector):
            picked = [i for i in picked if detector.name in chunk[i].prepared]
        if not picked:
            continue
        if rt.infer_pool is not None:
            runs.append(
                (detector, picked, rt.infer_pool.submit(_run_detector, detector, chunk, picked))
            )
        else:
            runs.append((detector, picked, _run_detector(detector, chunk, picked)))
    prediction = rt.classifier.predict(_stack(chunk))
    out: list[list[tuple[Detector, int, Result]]] = []
    for detector, picked, pending in runs:
        results = pending.result() if isinstance(pending, Future) else pending
        out.append([(detector, i, r) for i, r in zip(picked, results, strict=True)])
    return prediction, out


def _stack(chunk: Sequence[Loaded]) -> FloatArray:
    return np.stack([item.array for item in chunk if item.array is not None])
