"""`modq submit`: validate a JSON-lines file of events and publish the good ones.

Bad lines are reported by line number and recorded in `rejected_events`, so nothing a
producer sent is silently lost, even when it never reaches the broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from modq.domain.envelope import make_body
from modq.domain.events import parse_event
from modq.domain.verdicts import RejectedEvent, Source
from modq.errors import EventError
from modq.ingest.publish import known_categories, publish_bodies, queue_for
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.verdicts import record_rejected

CHUNK = 1000


@dataclass
class SubmitReport:
    queued: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def submit_lines(lines: Iterable[str], settings: Settings, source: Source = "new") -> SubmitReport:
    categories = known_categories(settings)
    queue = queue_for(settings, source)
    report = SubmitReport()
    bodies, bad = [], []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(line, categories)
        except EventError as exc:
            report.rejected.append((line_no, str(exc)))
            bad.append(RejectedEvent(stage="submit", reason=f"line {line_no}: {exc}", payload=line))
            continue
        bodies.append(make_body(event, source))
        if len(bodies) >= CHUNK:
            report.queued += publish_bodies(bodies, settings, queue=queue)
            bodies = []
    if bodies:
        report.queued += publish_bodies(bodies, settings, queue=queue)
    if bad:
        engine = make_engine(settings.database_url)
        try:
            record_rejected(engine, bad)
        finally:
            engine.dispose()
    return report
