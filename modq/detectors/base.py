"""What every banned-content detector looks like to the pipeline.

A detector takes the batch of photos the worker has already decoded (RGB, shorter side at
least `min_side`) and returns one result per photo, in order: a dict of per-label scores in
[0, 1], or the exception that photo raised. One bad photo never costs the others their
scores: `score_isolated` runs the batch once and, only if that fails, photo by photo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from PIL import Image

from modq.errors import DetectorError

Scores = dict[str, float]
Result = Scores | Exception
T = TypeVar("T")


@runtime_checkable
class Detector(Protocol):
    """Batch in, one score dict (or the photo's exception) per photo out."""

    name: str
    labels: tuple[str, ...]
    min_side: int

    def score(self, images: Sequence[Image.Image]) -> list[Result]: ...


def as_detector_error(name: str, exc: Exception) -> DetectorError:
    if isinstance(exc, DetectorError):
        return exc
    err = DetectorError(f"{name}: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def score_isolated(
    name: str,
    images: Sequence[Image.Image],
    prepare: Callable[[Image.Image], T],
    run: Callable[[list[T]], list[Scores]],
) -> list[Result]:
    """Prepare each photo on its own, run the prepared ones as one batch.

    `prepare` failures become that photo's error. If the batch call itself fails (a photo
    the model chokes on, an out-of-memory on a huge batch) each photo is retried alone, so
    the failure stays with the photo that caused it.
    """
    results: list[Result | None] = [None] * len(images)
    prepared: list[T] = []
    where: list[int] = []
    for i, img in enumerate(images):
        try:
            prepared.append(prepare(img))
            where.append(i)
        except Exception as exc:
            results[i] = as_detector_error(name, exc)
    if prepared:
        try:
            scores = run(prepared)
            if len(scores) != len(prepared):
                raise DetectorError(f"{name}: {len(scores)} results for {len(prepared)} photos")
            for i, s in zip(where, scores, strict=True):
                results[i] = s
        except Exception:
            for i, item in zip(where, prepared, strict=True):
                try:
                    results[i] = run([item])[0]
                except Exception as exc:
                    results[i] = as_detector_error(name, exc)
    return [r if r is not None else DetectorError(f"{name}: no result") for r in results]


def ort_providers(providers: Sequence[str] | None) -> list[str]:
    """The requested ONNX Runtime providers that this build offers, CPU as the last resort."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in (providers or []) if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen
