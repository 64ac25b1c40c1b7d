"""Photos of a batch: load (fetch + decode + preprocess + PDQ, `modq.pipeline.sized`) on the
thread pool, and run the model and the image detectors on chunks as soon as they are ready.

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

from modq.detectors.hashing import PhotoHash
from modq.errors import PhotoError, PhotoFetchError
from modq.pipeline.infer import FloatArray
from modq.pipeline.runtime import Runtime
from modq.pipeline.sized import Loaded, load_photo, score_chunk

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


def _loaded_by(futures: list[Future[Loaded]], refs: Sequence[str], deadline: float | None,
               ) -> Iterator[Loaded]:  # fmt: skip
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
                yield Loaded(key, refs[key], None, None, error, 0.0, 0.0)


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
    futures: list[Future[Loaded]] = [
        rt.pool.submit(load_photo, i, ref, rt, categories[i] if categories else None)
        for i, ref in enumerate(refs)
    ]
    ready: list[Loaded] = []
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
    chunk: list[Loaded], rt: Runtime, categories: Sequence[str] | None = None
) -> Iterator[tuple[int, PhotoOutcome]]:
    # The classifier and the detectors' models run concurrently (pipeline/sized.py).
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
