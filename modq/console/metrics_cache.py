"""The metrics page's numbers (queue depth and age, decisions per hour, time to decision,
automation share over every listing, overturn rates over 30 days of decisions, quality-check
agreement) as a snapshot each console process computes at most once per
`console_metrics_cache_s`.

At 1M verdicts those aggregates take seconds; a page that must answer in well under 100 ms
cannot run them per request. A request finds the latest snapshot and shows its age; a stale
one is served while one background thread computes the next, so no request waits for it
except the very first of a process (nothing to show yet). A cache of 0 s computes on every
request (tests, or a console with little data).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modq.store.database import Engine
from modq.store.review_metrics import (
    auto_decided_share,
    decisions_per_hour,
    median_time_to_decision,
    overturn_rates,
    queue_ages,
)
from modq.store.review_quality import quality_summary
from modq.store.reviews import queue_counts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    values: dict[str, Any]
    computed_at: float  # time.monotonic()

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.computed_at


def compute(engine: Engine) -> dict[str, Any]:
    # Everything the page shows: at 1M verdicts even the 24-hour and 7-day reads (tens of
    # thousands of decisions) cost a few hundred ms together; the home page has live counts.
    return {
        "counts": queue_counts(engine),
        "ages": queue_ages(engine),
        "per_hour": decisions_per_hour(engine),
        "median": median_time_to_decision(engine),
        "shares": auto_decided_share(engine),
        "overturns": overturn_rates(engine),
        "quality": quality_summary(engine),
    }


class MetricsCache:
    def __init__(
        self,
        engine: Engine,
        max_age_s: float,
        compute: Callable[[Engine], dict[str, Any]] = compute,
    ) -> None:
        self.engine, self.max_age_s, self._compute = engine, max_age_s, compute
        self._snapshot: Snapshot | None = None
        self._first = threading.Lock()  # held while a process computes its first snapshot
        self._refreshing = threading.Lock()  # held by the one background refresh

    def _fresh(self) -> Snapshot:
        snapshot = Snapshot(self._compute(self.engine), time.monotonic())
        self._snapshot = snapshot
        return snapshot

    def get(self) -> Snapshot:
        if self.max_age_s <= 0:
            return self._fresh()
        snapshot = self._snapshot
        if snapshot is None:
            with self._first:
                return self._snapshot or self._fresh()
        if snapshot.age_s >= self.max_age_s and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="metrics-refresh", daemon=True).start()
        return snapshot

    def warm(self) -> None:
        """Compute the first snapshot in the background (at console start)."""
        if self.max_age_s > 0 and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="metrics-warm", daemon=True).start()

    def _refresh(self) -> None:
        try:
            with self._first:
                self._fresh()
        except Exception:
            # The page keeps the previous snapshot (its age says how old); the cause is logged.
            log.exception("console: computing the metrics snapshot failed")
        finally:
            self._refreshing.release()
