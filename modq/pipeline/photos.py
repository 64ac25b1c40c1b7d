"""Photos of a batch: load each on the thread pool (fetch, decode at the size its category
needs, model input, PDQ hash, detector inputs), then run the model and the image detectors on
chunks as soon as they are ready. One type, `Photo`, carries a photo through both steps.

- Photo loading runs on a thread pool (Pillow and httpx release the GIL) and inference starts
  on the first ready chunk while the rest still decode. A photo that cannot be read becomes a
  per-photo error, never a failed batch.
- A photo is decoded (JPEG draft mode) at the shorter side that the classifier and the
  detectors the policy enables *for its declared category* need (their catalogue entries'
  `min_side`): 224-256 px by default, 736 px only where OCR (contacts) is switched on. Without
  a category every detector counts.
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
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from modq.detectors.base import Detector, Result, as_detector_error
from modq.detectors.hashing import PhotoHash
from modq.domain.preprocess import preprocess
from modq.errors import PhotoError, PhotoFetchError
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


@dataclass(frozen=True)
class Photo:
    """One photo of a batch. `load_photo` builds it (decoded, or with its `error`); scoring
    gives a new one with `probs` and `detectors` and without the decoded pixels, never
    changing the loaded one. `probs` is None when the photo could not be used."""

    key: int  # position in the batch's refs
    ref: str
    fetch_ms: float = 0.0
    decode_ms: float = 0.0
    error: PhotoError | None = None
    array: FloatArray | None = None  # the model's input
    image: Image.Image | None = None
    pdq: PhotoHash | None = None
    # Detector name -> its prepared input for this photo, or the exception preparing raised.
    prepared: Mapping[str, Any] = field(default_factory=dict)
    probs: FloatArray | None = None
    detectors: Mapping[str, float] = field(default_factory=dict)


def enabled_detectors(rt: Runtime, category: str | None) -> list[Detector]:
    rules = rt.policy.detector_rules
    return [d for d in rt.detectors if category is None or rules.enabled(d.name, category)]


def decode_side(rt: Runtime, category: str | None) -> int:
    """Shorter side to decode at: the classifier's resize or what an enabled detector needs."""
    needs = [d.min_side for d in enabled_detectors(rt, category)]
    return max([rt.classifier.contract.preprocess.resize, *needs])


def load_photo(key: int, ref: str, rt: Runtime, category: str | None) -> Photo:
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
        return Photo(key, ref, (fetch_end - t0) * 1e3, (now - fetch_end) * 1e3, error=exc)
    t2 = time.perf_counter()
    pdq = None
    if rt.banks is not None:
        # The hash of the bytes (issue 13): never dependent on the detector set or the model's
        # decode size; taken from `image` only where that is the same thing.
        try:
            pdq = photo_hash(image, data, rt.settings.max_image_pixels)
        except Exception:  # a hash failure only skips the bank check for this photo
            log.warning("PDQ hash failed for %s", ref, exc_info=True)
    prepared: dict[str, Any] = {}
    for detector in enabled_detectors(rt, category):
        if isinstance(detector, PreparingDetector):
            try:
                prepared[detector.name] = detector.prepare(image)
            except Exception as exc:
                prepared[detector.name] = as_detector_error(detector.name, exc)
    return Photo(
        key, ref, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
        array=array, image=image, pdq=pdq, prepared=prepared,
    )  # fmt: skip


def _run_detector(detector: Detector, chunk: Sequence[Photo], picked: list[int]) -> list[Result]:
    if isinstance(detector, PreparingDetector):
        return detector.score_prepared([chunk[i].prepared[detector.name] for i in picked])
    return detector.score([img for i in picked if (img := chunk[i].image) is not None])


def score_chunk(
    chunk: Sequence[Photo], rt: Runtime, categories: Sequence[str] | None
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


def _stack(chunk: Sequence[Photo]) -> FloatArray:
    return np.stack([item.array for item in chunk if item.array is not None])


def _loaded_by(futures: list[Future[Photo]], refs: Sequence[str], deadline: float | None,
               ) -> Iterator[Photo]:  # fmt: skip
    """Loaded photos in completion order; those not loaded by `deadline` (time.monotonic())
    become per-photo errors, and the loads not started yet are cancelled."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    done: set[int] = set()
    try:
        for fut in as_completed(futures, timeout=timeout):
            loaded = fut.result()
            done.add(loaded.key)
            yield loaded
    except TimeoutError:
        for key, fut in enumerate(futures):
            if key not in done:
                fut.cancel()
                error = PhotoFetchError("batch deadline passed before this photo was read")
                yield Photo(key, refs[key], error=error)


def infer_photos(
    refs: Sequence[str],
    rt: Runtime,
    categories: Sequence[str] | None = None,
    deadline: float | None = None,
) -> Iterator[tuple[int, Photo]]:
    """Load every photo on the pool and run the model on chunks as they become ready.

    `categories` (the declared category of each ref) lets the policy switch detectors off per
    category; without it every detector runs. Photos not loaded by `deadline` (a
    time.monotonic() value) become per-photo errors. Yields (position in `refs`, outcome) in
    completion order.
    """
    futures: list[Future[Photo]] = [
        rt.pool.submit(load_photo, i, ref, rt, categories[i] if categories else None)
        for i, ref in enumerate(refs)
    ]
    ready: list[Photo] = []
    for loaded in _loaded_by(futures, refs, deadline):
        if loaded.error is not None:
            yield loaded.key, loaded
            continue
        ready.append(loaded)
        if len(ready) >= rt.settings.infer_batch:
            yield from _run_chunk(ready, rt, categories)
            ready = []
    if ready:
        yield from _run_chunk(ready, rt, categories)


def _run_chunk(
    chunk: list[Photo], rt: Runtime, categories: Sequence[str] | None = None
) -> Iterator[tuple[int, Photo]]:
    # The classifier and the detectors' models run concurrently (`score_chunk`).
    prediction, detector_rows = score_chunk(chunk, rt, categories)
    scores: list[dict[str, float]] = [{} for _ in chunk]
    for name, head in prediction.heads.items():
        labels = rt.classifier.contract.detectors[name].labels
        for row, photo_scores in zip(head, scores, strict=True):
            photo_scores.update(
                {f"{name}.{lbl}": round(float(s), 6) for lbl, s in zip(labels, row, strict=True)}
            )
    errors: list[PhotoError | None] = [None] * len(chunk)
    for rows in detector_rows:
        for detector, i, result in rows:
            if isinstance(result, Exception):
                err = result if isinstance(result, PhotoError) else None
                errors[i] = errors[i] or err or PhotoError(f"{detector.name}: {result}")
            else:
                scores[i].update({f"{detector.name}.{k}": round(v, 6) for k, v in result.items()})
    for item, probs, photo_scores, error in zip(
        chunk, prediction.probs, scores, errors, strict=True
    ):
        # A new value without the pixels: a batch keeps only what the verdict needs.
        scored = replace(
            item,
            array=None,
            image=None,
            prepared={},
            error=error,
            probs=probs if error is None else None,
            detectors=photo_scores,
        )
        yield item.key, scored
