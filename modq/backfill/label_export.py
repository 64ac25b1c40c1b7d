"""`modq reviews export`: human decisions written as training data for `modq-train`.

Only what the moderator decided becomes a label (docs/console.md, "Labels"):

    DIR/train/<category>/<listing>-<photo>.<ext>     re-categorised (the moderator's category)
                                                     and approved (declared category confirmed)
    DIR/banned/<label>/<listing>-<photo>.<ext>       a reject: the photos the chosen reason
                                                     concerns, each under one label (that
                                                     reason's detector label, the highest-scoring
                                                     one where the machine named several)
    DIR/negative/<label>/<listing>-<photo>.<ext>     photos the moderator marked as not showing
                                                     the reason the machine gave for them
    DIR/labels.jsonl                                 one line per photo: where it came from, who
                                                     decided, the note, the verdict's model

A reject whose reason the machine never gave names no photo: no photo is exported for it
(listed in the report), rather than every photo under a guess. The latest decision counts:
an undone one is not exported (`listing_decisions` holds the latest not taken back).

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

from modq.domain.reasons import Reason, read_all
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


@dataclass(frozen=True)
class Target:
    tree: str  # "train", "banned" or "negative"
    label: str
    photo: int | None  # None: every photo of the listing


def _per_photo(reasons: list[Reason], n_photos: int) -> dict[int, Reason]:
    """The one reason per photo: the highest-scoring of those naming it (a reason naming no
    photo concerns every photo)."""
    best: dict[int, Reason] = {}
    for reason in reasons:
        photos = [reason.photo] if reason.photo is not None else list(range(n_photos))
        for p in photos:
            held = best.get(p)
            if held is None or (reason.score or 0.0) > (held.score or 0.0):
                best[p] = reason
    return best


def targets(row: dict[str, Any], n_photos: int) -> list[Target]:
    """What the decision in `row` teaches, photo by photo."""
    decision = row["final_decision"]
    marked = {int(i) for i in row.get("not_showing") or []}
    machine = [r for r in read_all(row.get("reasons")) if r.code in BANNED_CODES]
    out: list[Target] = []
    if decision in ("recategorise", "approve"):
        out.append(Target("train", row["final_category"], None))
        # An approve says the machine's banned reasons were wrong; the photos the moderator
        # marked are negatives for the label the machine gave them.
        if decision == "approve":
            for p, reason in sorted(_per_photo(machine, n_photos).items()):
                if p in marked:
                    out.append(Target("negative", reason.label or reason.code, p))
        return out
    code = row.get("reason_code")
    if decision != "reject" or code not in BANNED_CODES:
        return out
    chosen = [r for r in machine if r.code == code]
    for p, reason in sorted(_per_photo(chosen, n_photos).items()):
        label = reason.label or reason.code
        out.append(Target("negative" if p in marked else "banned", label, p))
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
            images = list(row["images"] or [])
            found = targets(row, len(images))
            if not found:
                if row["final_decision"] == "reject":
                    report.skipped.append(f"{row['listing_id']}: the reason names no photo")
                continue
            report.listings += 1
            for target in found:
                for i, ref in enumerate(images):
                    if target.photo is not None and i != target.photo:
                        continue
                    try:
                        data = fetcher.fetch(ref)
                    except PhotoError as exc:
                        report.skipped.append(f"{row['listing_id']} photo {i}: {exc}")
                        continue
                    name = f"{_SAFE.sub('_', row['listing_id'])}-{i}{_suffix(data)}"
                    folder = out_dir / target.tree / _SAFE.sub("_", target.label)
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(data)
                    report.photos += 1
                    entry = {
                        "path": f"{target.tree}/{folder.name}/{name}",
                        "label": target.label,
                        "negative": target.tree == "negative",
                        "listing_id": row["listing_id"],
                        "photo": i,
                        "decision": row["final_decision"],
                        "reason_code": row["reason_code"],
                        "declared_category": row["declared_category"],
                        "moderator": row["decided_by"],
                        "note": row["note"],
                        "decided_at": row["decided_at"].isoformat(),
                        "review_id": row["review_id"],
                        "model_version": row["model_version"],
                    }
                    index.write(json.dumps(entry) + "\n")
    return report
