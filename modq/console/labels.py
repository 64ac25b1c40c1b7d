"""`modq reviews export`: human decisions written as training data for `modq-train`.

Layout (what `modq-train prepare --extra DIR` reads, training/extra.py):

    DIR/train/<category>/<listing>-<photo>.<ext>   re-categorised (the moderator's category)
                                                   and approved (declared category confirmed)
    DIR/banned/<label>/<listing>-<photo>.<ext>     rejected banned content, per detector label
                                                   ("prohibited.firearm", "nudity.nsfw", ...)
    DIR/labels.jsonl                               one line per photo: where it came from, who
                                                   decided, the verdict's model version

Photos are read with the worker's confined loader and written as the seller uploaded them
(prepare decodes them with the worker's decoder, like every training photo).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from modq.domain.review import BANNED_CODES
from modq.errors import PhotoError
from modq.pipeline.fetch import PhotoFetcher
from modq.settings import Settings
from modq.store.database import connected
from modq.store.labels import settled_since

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportReport:
    listings: int = 0
    photos: int = 0
    skipped: list[str] = field(default_factory=list)


def _targets(row: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """(tree, label, photo index or None for every photo) the decision teaches."""
    decision = row["final_decision"]
    if decision in ("recategorise", "approve"):
        return [("train", row["final_category"], None)]
    out = []
    for reason in row["reasons"] or []:
        if reason.code in BANNED_CODES:
            out.append(("banned", reason.label or reason.code, reason.photo))
    return out


def _suffix(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "jpeg").lower()
    except (UnidentifiedImageError, OSError):
        return ".jpg"
    return ".jpg" if fmt == "jpeg" else f".{fmt}"


def export_labels(settings: Settings, since: datetime, out_dir: Path) -> ExportReport:
    report = ExportReport()
    with connected(settings.database_url) as engine:
        rows = settled_since(engine, since)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train").mkdir(exist_ok=True)
    with PhotoFetcher(settings) as fetcher, (out_dir / "labels.jsonl").open("w") as index:
        for row in rows:
            targets = _targets(row)
            if not targets:
                continue
            report.listings += 1
            images = list(row["images"] or [])
            for tree, label, only in targets:
                for i, ref in enumerate(images):
                    if only is not None and i != only:
                        continue
                    try:
                        data = fetcher.fetch(ref)
                    except PhotoError as exc:
                        report.skipped.append(f"{row['listing_id']} photo {i}: {exc}")
                        continue
                    name = f"{_SAFE.sub('_', row['listing_id'])}-{i}{_suffix(data)}"
                    folder = out_dir / tree / _SAFE.sub("_", label)
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(data)
                    report.photos += 1
                    entry = {
                        "path": f"{tree}/{folder.name}/{name}",
                        "label": label,
                        "listing_id": row["listing_id"],
                        "photo": i,
                        "decision": row["final_decision"],
                        "declared_category": row["declared_category"],
                        "moderator": row["decided_by"],
                        "decided_at": row["decided_at"].isoformat(),
                        "review_id": row["review_id"],
                        "model_version": row["model_version"],
                    }
                    index.write(json.dumps(entry) + "\n")
    return report
