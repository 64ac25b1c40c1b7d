"""`modq backfill --from-file`: an export of listing events (JSON lines or CSV) as pages to queue.

It brings listings modq has never seen, so lines are validated like `modq submit` input: a bad
line is counted as skipped and recorded in `rejected_events` with its line number. The
checkpoint cursor is the line number, so a resumed run skips the lines already consumed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modq.backfill.selection import Deployed, Page, Selection, is_current
from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent, as_utc, parse_event
from modq.domain.verdicts import RejectedEvent
from modq.errors import EventError
from modq.store.backfill import current_verdict_keys
from modq.store.checkpoints import Counts
from modq.store.database import Engine


def _csv_record(row: dict[Any, Any]) -> dict[str, Any]:
    """A CSV row as an event dict: empty cells are absent, `images` is a JSON array or refs
    separated by `|`."""
    record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    if None in row:
        record["_extra_cells"] = row[None]  # more cells than header columns: fails validation
    images = record.get("images")
    if isinstance(images, str):
        text = images.strip()
        record["images"] = json.loads(text) if text.startswith("[") else text.split("|")
    for name in ("listing_version", "schema_version"):
        value = record.get(name)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            record[name] = int(value)
    return record


def _file_lines(path: Path) -> Iterator[tuple[int, str | dict[str, Any], str]]:
    """(line number, raw event, raw text) for every non-blank event in the file."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            line_no = reader.line_num
            for row in reader:
                start, line_no = line_no + 1, reader.line_num
                raw: str | dict[str, Any]
                try:
                    raw = _csv_record(row)
                except json.JSONDecodeError:
                    raw = json.dumps(row)  # images cell is not a JSON array: parse fails below
                yield start, raw, json.dumps(row, ensure_ascii=False)
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                yield line_no, line, line.rstrip("\n")


def count_export_lines(path: Path, after: int | None) -> int:
    return sum(1 for n, _, _ in _file_lines(path) if after is None or n > after)


def _in_window(event: ListingEvent, selection: Selection) -> bool:
    if selection.category is not None and event.declared_category != selection.category:
        return False
    created = as_utc(event.created_at)
    if selection.since is not None and created < as_utc(selection.since):
        return False
    return not (selection.until is not None and created >= as_utc(selection.until))


def export_pages(
    engine: Engine, selection: Selection, deployed: Deployed, after: int | None, page_size: int
) -> Iterator[Page]:
    assert selection.from_file is not None
    name = selection.from_file.name
    chunk: list[tuple[int, str | dict[str, Any], str]] = []
    for item in _file_lines(selection.from_file):
        if after is not None and item[0] <= after:
            continue
        chunk.append(item)
        if len(chunk) >= page_size:
            yield _file_page(engine, selection, deployed, chunk, name)
            chunk = []
    if chunk:
        yield _file_page(engine, selection, deployed, chunk, name)


def _file_page(
    engine: Engine,
    selection: Selection,
    deployed: Deployed,
    chunk: list[tuple[int, str | dict[str, Any], str]],
    name: str,
) -> Page:
    page = Page(bodies=[], counts=Counts(), size=len(chunk), last_line=chunk[-1][0])
    events = []
    for line_no, raw, text in chunk:
        try:
            event = parse_event(raw, deployed.categories)
        except EventError as exc:
            page.skip(
                f"{name} line {line_no}: {exc}",
                RejectedEvent(
                    stage="submit", reason=f"backfill {name} line {line_no}: {exc}", payload=text
                ),
            )
            continue
        if _in_window(event, selection):
            events.append(event)
        else:
            page.counts.not_selected += 1
    current = (
        {} if selection.force else current_verdict_keys(engine, {e.listing_id for e in events})
    )
    for event in events:
        seen = current.get(event.listing_id)
        if seen is not None and is_current(deployed, event.listing_version, *seen):
            page.counts.already_current += 1
            continue
        page.bodies.append(make_body(event, "backfill"))
        page.counts.queued += 1
    return page
