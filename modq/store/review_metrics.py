"""Metrics of human review, read in SQL: throughput per moderator, time to decision,
the share of listings the machine decides alone, and how often humans overturn it."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.reasons import read_all
from modq.domain.review import FINAL_DECISIONS, is_overturn
from modq.store.database import as_utc, unavailable
from modq.store.review_shift import undone_ids
from modq.store.schema import UNDO, listings, review_jobs, reviews, verdicts

# Metrics take the latest decision: a review an undo took back does not count, nor the undo.
_KEPT = sa.and_(reviews.c.decision != UNDO, reviews.c.id.not_in(undone_ids()))


def decisions_per_hour(engine: Engine, hours: int = 24) -> dict[str, list[int]]:
    """Per moderator, decisions in each of the last `hours` hours (oldest hour first)."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    query = sa.select(reviews.c.moderator, reviews.c.created_at).where(
        reviews.c.created_at >= since, _KEPT
    )
    out: dict[str, list[int]] = defaultdict(lambda: [0] * hours)
    with unavailable("reading decisions"), engine.connect() as conn:
        for moderator, at in conn.execute(query):
            slot = min(hours - 1, int((as_utc(at) - since).total_seconds() // 3600))
            out[moderator][slot] += 1
    return dict(sorted(out.items()))


def median_time_to_decision(engine: Engine, days: int = 7, sample: int = 10_000) -> float | None:
    """Median seconds from the machine's verdict to the human decision that settled it."""
    since = datetime.now(UTC) - timedelta(days=days)
    query = (
        sa.select(reviews.c.created_at, verdicts.c.created_at)
        .join(verdicts, verdicts.c.id == reviews.c.verdict_id)
        .where(reviews.c.created_at >= since, reviews.c.decision.in_(FINAL_DECISIONS), _KEPT)
        .order_by(reviews.c.created_at.desc())
        .limit(sample)
    )
    with unavailable("reading decision times"), engine.connect() as conn:
        spans = [(as_utc(d) - as_utc(v)).total_seconds() for d, v in conn.execute(query)]
    return statistics.median(spans) if spans else None


def auto_decided_share(engine: Engine) -> list[dict[str, Any]]:
    """Per declared category: listings, and the share whose current verdict needed no human."""
    total = sa.func.count()
    auto = sa.func.count().filter(verdicts.c.decision != "review")
    query = (
        sa.select(listings.c.declared_category, total.label("listings"), auto.label("auto"))
        .join(verdicts, listings.c.current_verdict_id == verdicts.c.id)
        .group_by(listings.c.declared_category)
        .order_by(listings.c.declared_category)
    )
    with unavailable("reading auto-decided shares"), engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["share"] = row["auto"] / row["listings"] if row["listings"] else 0.0
    return rows


def overturn_rates(engine: Engine, days: int = 30) -> dict[str, list[dict[str, Any]]]:
    """How often a human approved what the machine flagged, per reason code and per model
    version, over settling decisions of the last `days` days."""
    since = datetime.now(UTC) - timedelta(days=days)
    query = (
        sa.select(reviews.c.decision, reviews.c.model_version, verdicts.c.reasons)
        .join(verdicts, verdicts.c.id == reviews.c.verdict_id)
        .where(reviews.c.created_at >= since, reviews.c.decision.in_(FINAL_DECISIONS), _KEPT)
    )
    by_reason: Counter[str] = Counter()
    over_reason: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    over_model: Counter[str] = Counter()
    with unavailable("reading overturns"), engine.connect() as conn:
        for decision, model, reasons in conn.execute(query):
            overturned = is_overturn(decision)
            by_model[model] += 1
            over_model[model] += overturned
            for code in {r.code for r in read_all(reasons)}:
                by_reason[code] += 1
                over_reason[code] += overturned

    def rows(total: Counter[str], over: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"key": k, "decided": n, "overturned": over[k], "rate": over[k] / n}
            for k, n in sorted(total.items())
        ]

    return {"reason": rows(by_reason, over_reason), "model": rows(by_model, over_model)}


def queue_ages(engine: Engine) -> dict[str, float]:
    """Per queue, the age in seconds of the oldest pending job."""
    j = review_jobs.c
    query = (
        sa.select(j.queue, sa.func.min(j.enqueued_at))
        .where(j.decided_at.is_(None))
        .group_by(j.queue)
    )
    now = datetime.now(UTC)
    with unavailable("reading queue ages"), engine.connect() as conn:
        return {q: (now - as_utc(t)).total_seconds() for q, t in conn.execute(query)}
