"""`modq classify`: the worker's batched load-and-infer path over local files, no broker or
database. Only the category model (and the heads inside its graph) runs unless detectors are
asked for. Photos go through in windows of CHUNK so decoding overlaps inference, and each
result is yielded as soon as it and every photo before it are done (input order, streamed)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from modq.errors import PhotoFetchError, PhotoTooLargeError
from modq.pipeline.photos import Photo, infer_photos
from modq.pipeline.runtime import Runtime
from modq.settings import Settings

CHUNK = 256


def classify_files(
    paths: Sequence[Path],
    settings: Settings,
    top_k: int = 3,
    detectors: Sequence[str] = (),
) -> Iterator[dict[str, Any]]:
    """One dict per photo, in input order: `photo`, `top` and detector scores, or `error`.

    `detectors` are image detectors to run as well (nudity, contacts); none by default.
    """

    def read(ref: str) -> bytes:
        path = Path(ref)
        try:
            size = path.stat().st_size
            if size > settings.max_image_bytes:
                raise PhotoTooLargeError(
                    f"{size} bytes exceeds the cap of {settings.max_image_bytes}"
                )
            return path.read_bytes()
        except OSError as exc:
            raise PhotoFetchError(f"cannot read {path}: {exc.strerror}") from exc

    only = settings.model_copy(update={"detectors": [d for d in detectors if d != "banks"]})
    rt = Runtime.build(only, read=read)
    labels = rt.classifier.contract.labels
    try:
        for start in range(0, len(paths), CHUNK):
            chunk = [str(p) for p in paths[start : start + CHUNK]]
            done: dict[int, dict[str, Any]] = {}
            next_pos = 0
            for pos, out in infer_photos(chunk, rt):
                done[pos] = _row(chunk[pos], out, labels, top_k)
                while next_pos in done:
                    yield done.pop(next_pos)
                    next_pos += 1
    finally:
        rt.close()


def _row(photo: str, out: Photo, labels: Sequence[str], top_k: int) -> dict[str, Any]:
    row: dict[str, Any] = {"photo": photo}
    if out.probs is None:
        row["error"] = f"{getattr(out.error, 'code', 'image_unreadable')}: {out.error}"
    else:
        order = out.probs.argsort()[::-1][:top_k]
        row["top"] = [[labels[k], round(float(out.probs[k]), 6)] for k in order]
        row["detectors"] = out.detectors
    return row
