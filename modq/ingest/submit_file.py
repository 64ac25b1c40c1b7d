"""`modq submit`: validate a JSON-lines file of events and publish the good ones.

Good lines are accepted (intake table) and published in chunks; bad lines are reported by line
number and recorded in `rejected_events` with their listing id when the line has one, so
nothing a producer sent is silently lost, even when it never reaches the broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from modq.domain.envelope import listing_id_of, listing_version_of
from modq.domain.events import ListingEvent, parse_event
from modq.domain.verdicts import RejectedEvent, Source
from modq.errors import EventError
from modq.ingest.publish import accept_and_publish, known_categories
from modq.settings import Settings
from modq.store.database import connected
from modq.store.verdicts import record_rejected

CHUNK = 1000


@dataclass
class SubmitReport:
    queued: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _rejected_line(line_no: int, line: str, exc: EventError) -> RejectedEvent:
    try:
        raw = json.loads(line)
    except ValueError:
        raw = None
    body = {"event": raw} if isinstance(raw, dict) else {}
    return RejectedEvent(
        stage="submit",
        reason=f"line {line_no}: {exc}",
        payload=line,
        listing_id=listing_id_of(body),
        listing_version=listing_version_of(body) if body else None,
    )


def submit_lines(lines: Iterable[str], settings: Settings, source: Source = "new") -> SubmitReport:
    categories = known_categories(settings)
    report = SubmitReport()
    events: list[ListingEvent] = []
    bad: list[RejectedEvent] = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(line, categories)
        except EventError as exc:
            report.rejected.append((line_no, str(exc)))
            bad.append(_rejected_line(line_no, line, exc))
            continue
        events.append(event)
        if len(events) >= CHUNK:
            report.queued += accept_and_publish(events, settings, source)
            events = []
    if events:
        report.queued += accept_and_publish(events, settings, source)
    if bad:
        with connected(settings.database_url) as engine:
            record_rejected(engine, bad)
    return report
