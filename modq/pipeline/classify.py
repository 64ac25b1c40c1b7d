"""`modq classify`: the worker's batched load-and-infer path over local files, no broker or
database. Photos are processed in chunks so decoding overlaps inference, as in the worker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from modq.errors import PhotoFetchError, PhotoTooLargeError
from modq.pipeline.photos import infer_photos
from modq.pipeline.runtime import Runtime
from modq.settings import Settings

CHUNK = 256


def classify_files(
    paths: Sequence[Path], settings: Settings, top_k: int = 3
) -> Iterator[dict[str, Any]]:
    """One dict per photo, in input order: `photo`, `top` and detector scores, or `error`."""

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

    rt = Runtime.build(settings, read=read)
    labels = rt.classifier.contract.labels
    try:
        for start in range(0, len(paths), CHUNK):
            chunk = [str(p) for p in paths[start : start + CHUNK]]
            rows: dict[int, dict[str, Any]] = {}
            for pos, out in infer_photos(chunk, rt):
                row: dict[str, Any] = {"photo": chunk[pos]}
                if out.probs is None:
                    row["error"] = f"{getattr(out.error, 'code', 'image_unreadable')}: {out.error}"
                else:
                    order = out.probs.argsort()[::-1][:top_k]
                    row["top"] = [[labels[k], round(float(out.probs[k]), 6)] for k in order]
                    row["detectors"] = out.detectors
                rows[pos] = row
            for pos in range(len(chunk)):
                yield rows[pos]
    finally:
        rt.close()
