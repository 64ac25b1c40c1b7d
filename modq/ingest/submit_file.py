"""`modq submit`: validate a JSON-lines file of events and publish the good ones.

Good lines are accepted (intake table) and published in chunks; bad lines are reported by line
number and recorded in `rejected_events` with their listing id when the line has one, so
nothing a producer sent is silently lost, even when it never reaches the broker.

Every line ends either accepted or recorded as a rejection with its line number, whatever it
holds: bytes that are not UTF-8, JSON nested thousands deep, numbers too large for the
database, NUL characters or lone surrogates become rejections of that line alone, never a
traceback that drops the lines after it. The file is read as bytes for that reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from modq.domain.envelope import listing_id_of, listing_version_of
from modq.domain.events import MAX_VERSION, ListingEvent, id_problem, parse_event
from modq.domain.verdicts import RejectedEvent, Source
from modq.errors import EventError
from modq.ingest.publish import accept_and_publish, known_categories
from modq.settings import Settings
from modq.store.database import connected
from modq.store.verdicts import record_rejected

log = logging.getLogger(__name__)

CHUNK = 1000


@dataclass
class SubmitReport:
    queued: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _rejected_line(line_no: int, line: str, reason: str) -> RejectedEvent:
    """The rejection of one line; its listing id and version only when they are ones the
    database can hold (a hostile id must not fail the recording of its own rejection)."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        raw = None
    body = {"event": raw} if isinstance(raw, dict) else {}
    listing_id = listing_id_of(body)
    version = listing_version_of(body) if body else None
    return RejectedEvent(
        stage="submit",
        reason=f"line {line_no}: {reason}",
        payload=line,
        listing_id=listing_id if listing_id is not None and not id_problem(listing_id) else None,
        listing_version=version if version is not None and 1 <= version <= MAX_VERSION else None,
    )


def _text(line: str | bytes) -> tuple[str, str | None]:
    """The line as text (undecodable bytes replaced, for the record) and why it cannot be
    read as UTF-8, if it cannot."""
    if isinstance(line, str):
        return line, None
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return line.decode(
            "utf-8", errors="replace"
        ), f"not UTF-8 text: {exc.reason} at byte {exc.start}"


def _parse(text: str, categories: tuple[str, ...]) -> ListingEvent | str:
    """The event, or why the line is rejected."""
    try:
        return parse_event(text, categories)
    except EventError as exc:
        return str(exc)
    except Exception as exc:  # one odd line must never cost the others
        log.exception("submit: a line failed validation unexpectedly")
        return f"could not be validated ({type(exc).__name__})"


def submit_lines(
    lines: Iterable[str | bytes], settings: Settings, source: Source = "new"
) -> SubmitReport:
    categories = known_categories(settings)
    report = SubmitReport()
    events: list[ListingEvent] = []
    bad: list[RejectedEvent] = []
    for line_no, line in enumerate(lines, start=1):
        text, undecodable = _text(line)
        if not text.strip():
            continue
        outcome = undecodable or _parse(text, categories)
        if isinstance(outcome, str):
            report.rejected.append((line_no, outcome))
            bad.append(_rejected_line(line_no, text, outcome))
            continue
        events.append(outcome)
        if len(events) >= CHUNK:
            report.queued += accept_and_publish(events, settings, source)
            events = []
    if events:
        report.queued += accept_and_publish(events, settings, source)
    if bad:
        with connected(settings.database_url) as engine:
            record_rejected(engine, bad)
    return report
