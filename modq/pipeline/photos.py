"""Photos of a batch: load (fetch + decode + preprocess + PDQ) on the thread pool, and run
the model and the image detectors on chunks as soon as they are ready.

Photo loading runs on a thread pool (Pillow and httpx release the GIL) and inference starts
on the first ready chunk while the rest still decode. A photo that cannot be read becomes a
per-photo error, never a failed batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from modq.detectors.hashing import PhotoHash
from modq.domain.preprocess import preprocess
from modq.errors import PhotoError, PhotoFetchError
from modq.pipeline.decode import decode_image, hash_photo
from modq.pipeline.infer import FloatArray
from modq.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class PhotoOutcome:
    """One photo after loading and inference; `probs` is None when it could not be read."""

    ref: str
    probs: FloatArray | None = None
    detectors: dict[str, float] = field(default_factory=dict)
    error: PhotoError | None = None
    fetch_ms: float = 0.0
    decode_ms: float = 0.0
    pdq: PhotoHash | None = None
    evidence: dict[str, str] = field(default_factory=dict)


@dataclass
class _Loaded:
    key: int
    ref: str
    array: FloatArray | None
    image: Image.Image | None
    error: PhotoError | None
    fetch_ms: float
    decode_ms: float
    pdq: PhotoHash | None = None


def _load(key: int, ref: str, rt: Runtime) -> _Loaded:
    spec = rt.classifier.contract.preprocess
    t0 = t1 = time.perf_counter()
    try:
        data = rt.read(ref)
        t1 = time.perf_counter()
        decode_spec = spec.model_copy(update={"resize": rt.min_side})
        image = decode_image(data, decode_spec, rt.settings.max_image_pixels)
        array = preprocess(image, spec)
    except PhotoError as exc:
        # A failed fetch still took time (a timeout, retries): record it, not 0.
        now = time.perf_counter()
        fetch_end = t1 if t1 > t0 else now
        return _Loaded(key, ref, None, None, exc, (fetch_end - t0) * 1e3, (now - fetch_end) * 1e3)
    t2 = time.perf_counter()
    pdq = None
    if rt.banks is not None:
        # --- PDQ (issue 13): hashed from its own fixed-size decode of `data`, not from `image`,
        # so the hash does not depend on the detector set or the model's decode size. ---
        try:
            pdq = hash_photo(data, rt.settings.max_image_pixels)
        except Exception:  # a hash failure only skips the bank check for this photo
            log.warning("PDQ hash failed for %s", ref, exc_info=True)
    return _Loaded(key, ref, array, image, None, (t1 - t0) * 1e3, (t2 - t1) * 1e3, pdq)


def _loaded_by(futures: list[Future[_Loaded]], refs: Sequence[str], deadline: float | None,
               ) -> Iterator[_Loaded]:  # fmt: skip
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
                yield _Loaded(key, refs[key], None, None, error, 0.0, 0.0)


def infer_photos(
    refs: Sequence[str],
    rt: Runtime,
    categories: Sequence[str] | None = None,
    deadline: float | None = None,
) -> Iterator[tuple[int, PhotoOutcome]]:
    """Load every photo on the pool and run the model on chunks as they become ready.

    `categories` (the declared category of each ref) lets the policy switch detectors off per
    category; without it every detector runs. Photos not loaded by `deadline` (a
    time.monotonic() value) become per-photo errors. Yields (position in `refs`, outcome) in
    completion order.
    """
    futures: list[Future[_Loaded]] = [
        rt.pool.submit(_load, i, ref, rt) for i, ref in enumerate(refs)
    ]
    ready: list[_Loaded] = []
    for loaded in _loaded_by(futures, refs, deadline):
        if loaded.error is not None:
            yield (
                loaded.key,
                PhotoOutcome(loaded.ref, None, {}, loaded.error, loaded.fetch_ms, loaded.decode_ms),
            )
            continue
        ready.append(loaded)
        if len(ready) >= rt.settings.infer_batch:
            yield from _run_chunk(ready, rt, categories)
            ready = []
    if ready:
        yield from _run_chunk(ready, rt, categories)


def _run_chunk(
    chunk: list[_Loaded], rt: Runtime, categories: Sequence[str] | None = None
) -> Iterator[tuple[int, PhotoOutcome]]:
    batch = np.stack([item.array for item in chunk if item.array is not None])
    prediction = rt.classifier.predict(batch)
    scores: list[dict[str, float]] = [{} for _ in chunk]
    for name, head in prediction.heads.items():
        labels = rt.classifier.contract.detectors[name].labels
        for row, photo_scores in zip(head, scores, strict=True):
            photo_scores.update(
                {f"{name}.{lbl}": round(float(s), 6) for lbl, s in zip(labels, row, strict=True)}
            )
    errors: list[PhotoError | None] = [None] * len(chunk)
    rules = rt.policy.detector_rules
    for detector in rt.detectors:
        picked = [
            i
            for i, item in enumerate(chunk)
            if item.image is not None
            and (categories is None or rules.enabled(detector.name, categories[item.key]))
        ]
        images = [img for i in picked if (img := chunk[i].image) is not None]
        for i, result in zip(picked, detector.score(images), strict=True):
            if isinstance(result, Exception):
                err = result if isinstance(result, PhotoError) else None
                errors[i] = errors[i] or err or PhotoError(f"{detector.name}: {result}")
            else:
                scores[i].update({f"{detector.name}.{k}": round(v, 6) for k, v in result.items()})
    for item, probs, photo_scores, error in zip(
        chunk, prediction.probs, scores, errors, strict=True
    ):
        yield (
            item.key,
            PhotoOutcome(
                item.ref,
                probs if error is None else None,
                photo_scores,
                error,
                item.fetch_ms,
                item.decode_ms,
                item.pdq,
            ),
        )
