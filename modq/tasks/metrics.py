"""Prometheus metrics of a worker (docs/reliability.md lists them): what its batches did,
how long each stage took, and how deep the queues are.

Counters and histograms live in prometheus-client's default registry (with its process_*
metrics: RSS, CPU, open files); `observe_batch` is called once per stored batch. The queue
depths and the open intake rows are read when Prometheus scrapes (`QueueCollector`), so a
worker that is idle still reports them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modq.domain.envelope import event_of
from modq.domain.verdicts import RejectedEvent, Source, Verdict
from modq.errors import ModqError
from modq.ingest.broker import dead_queue
from modq.ingest.probe import queue_depths
from modq.settings import Settings

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900, 3600)
_STAGE = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

LISTINGS = Counter(
    "modq_listings", "Listings stored, by source and outcome (verdict, rejected).",
    ["source", "outcome"],
)  # fmt: skip
PHOTOS = Counter("modq_photos", "Photos moderated, by outcome (ok, error).", ["outcome"])
DECISIONS = Counter(
    "modq_decisions", "Verdicts by decision and reason code.",
    ["decision", "reason"],
)  # fmt: skip
PHOTO_ERRORS = Counter("modq_photo_errors", "Unusable photos by error code.", ["code"])
LATENCY = Histogram(
    "modq_latency_seconds",
    "From the listing's acceptance by submit (since=accepted) or, for messages without it, "
    "the event's created_at (since=created) to its stored verdict or rejection.",
    ["source", "since"],
    buckets=_SECONDS,
)
STAGE = Histogram(
    "modq_stage_seconds",
    "Time per stage: fetch and decode per photo; moderate (photos, model, policy) and store "
    "(parse + one transaction) per batch.",
    ["stage"],
    buckets=_STAGE,
)
BATCH_SIZE = Histogram(
    "modq_batch_size", "Messages per batch.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
RETRIES = Counter("modq_retries", "Messages re-queued after a transient failure.")
DEAD = Counter("modq_dead_lettered", "Messages parked in a dead-letter queue, by why.", ["why"])


def _latency(body: dict[str, Any], now: float) -> tuple[str, float] | None:
    accepted = body.get("accepted_at")
    if isinstance(accepted, int | float):
        return "accepted", now - float(accepted)
    event = event_of(body)
    created = event.get("created_at") if isinstance(event, dict) else None
    if isinstance(created, str):
        try:
            return "created", now - datetime.fromisoformat(created).timestamp()
        except ValueError:
            return None
    return None


def observe_batch(
    bodies: Sequence[dict[str, Any]],
    verdicts: Sequence[Verdict],
    rejected: Sequence[RejectedEvent],
    source: Source,
    elapsed_s: float,
) -> None:
    """Record one stored batch."""
    now = time.time()
    BATCH_SIZE.observe(len(bodies))
    LISTINGS.labels(source, "verdict").inc(len(verdicts))
    LISTINGS.labels(source, "rejected").inc(len(rejected))
    for body in bodies:
        measured = _latency(body, now)
        if measured is not None:
            LATENCY.labels(source, measured[0]).observe(max(0.0, measured[1]))
    moderate_s = 0.0
    for verdict in verdicts:
        moderate_s = max(moderate_s, verdict.timings.get("batch_ms", 0.0) / 1e3)
        for code in [reason.code for reason in verdict.reasons] or ["none"]:
            DECISIONS.labels(verdict.decision, code).inc()
        for photo in verdict.photos:
            PHOTOS.labels("ok" if photo.ok else "error").inc()
            if photo.error_code:
                PHOTO_ERRORS.labels(photo.error_code).inc()
            STAGE.labels("fetch").observe(photo.fetch_ms / 1e3)
            STAGE.labels("decode").observe(photo.decode_ms / 1e3)
    STAGE.labels("moderate").observe(moderate_s)
    STAGE.labels("store").observe(max(0.0, elapsed_s - moderate_s))


class QueueCollector(Collector):
    """Queue depths (new, backfill and their dead-letter queues) and open intake rows, read
    at scrape time; a broker or database that does not answer leaves its gauge out."""

    def __init__(self, settings: Settings, open_intake: Any = None) -> None:
        self.settings = settings
        self.open_intake = open_intake  # () -> int, or None

    def collect(self) -> Iterator[Metric]:
        s = self.settings
        queues = [s.queue_new, s.queue_backfill]
        queues += [dead_queue(q) for q in queues]
        depth = GaugeMetricFamily("modq_queue_depth", "Messages waiting.", labels=["queue"])
        try:
            for queue, n in queue_depths(s, queues).items():
                depth.add_metric([queue], n)
        except ModqError:
            pass
        yield depth
        if self.open_intake is not None:
            try:
                count = int(self.open_intake())
            except ModqError:
                return
            yield GaugeMetricFamily(
                "modq_intake_open", "Accepted listings without a verdict or rejection.", count
            )
