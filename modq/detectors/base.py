"""What every banned-content detector looks like to the pipeline.

A detector takes the batch of photos the worker has already decoded (RGB, shorter side at
least `min_side`) and returns one result per photo, in order: a dict of per-label scores in
[0, 1], or the exception that photo raised. One bad photo never costs the others their
scores: `score_isolated` runs the batch once and, only if that fails, photo by photo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from PIL import Image

from modq.errors import ConfigError, DetectorError, ModelContractError

Scores = dict[str, float]
Result = Scores | Exception
T = TypeVar("T")
S = TypeVar("S")


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
    images: Sequence[S],
    prepare: Callable[[S], T],
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


def ort_providers(providers: Sequence[Any] | None) -> list[Any]:
    """The requested ONNX Runtime providers that this build offers, CPU as the last resort.

    Entries keep their options (`("CUDAExecutionProvider", {"device_id": 1})`): a detector
    runs on the very GPU, with the very options, that the classifier got from
    `choose_providers` (with names alone ONNX Runtime would put it on GPU 0)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in (providers or []) if _provider_name(p) in available]
    if "CPUExecutionProvider" not in {_provider_name(p) for p in chosen}:
        chosen.append("CPUExecutionProvider")
    return chosen


def _provider_name(provider: Any) -> str:
    return str(provider[0] if isinstance(provider, tuple) else provider)


def open_session(path: str | Path, providers: Sequence[Any] | None, intra_op_threads: int) -> Any:
    """The one way modq opens an ONNX Runtime session, the classifier's and every detector's:
    the requested providers this build offers (`ort_providers`), the same options
    (`session_options`), and a missing or unreadable file reported as a modq error."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ConfigError(f"model file not found: {path}")
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=session_options(intra_op_threads),
            providers=ort_providers(providers),
        )
    except Exception as exc:  # ORT raises its own untyped errors for bad files
        raise ModelContractError(f"cannot load ONNX model {path}: {exc}") from exc


def session_options(intra_op_threads: int) -> Any:
    """ONNX Runtime options every session uses: full graph optimisation, idle threads that
    sleep instead of spinning (the decode threads and the other sessions need the cores;
    issue 14: spinning burnt ~25% of the classifier's CPU time), and `intra_op_threads` when
    set."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if intra_op_threads > 0:
        opts.intra_op_num_threads = intra_op_threads
    return opts
