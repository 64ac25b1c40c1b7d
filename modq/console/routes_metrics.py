"""Metrics page: queue depth and age, throughput, time to decision, automation share and
overturn rates, drawn as inline SVG."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modq.console.charts import bar_chart, line_chart
from modq.console.deps import ConsoleDep, UserDep
from modq.store.review_metrics import decisions_per_hour, median_time_to_decision, queue_ages
from modq.store.reviews import queue_counts

router = APIRouter()


@router.get("/metrics")
def metrics_page(request: Request, console: ConsoleDep, user: UserDep) -> Response:
    engine = console.engine
    counts = queue_counts(engine)
    ages = queue_ages(engine)
    per_hour = decisions_per_hour(engine)
    # The aggregates over every listing and 30 days of decisions: a snapshot (its age shown).
    snapshot = console.metrics.get()
    shares, overturns = snapshot.values["shares"], snapshot.values["overturns"]
    quality = snapshot.values["quality"]
    median = median_time_to_decision(engine)
    context = {
        "counts": counts,
        "median_s": median,
        "depth_chart": bar_chart([(c["title"], float(c["pending"])) for c in counts]),
        "age_chart": bar_chart(
            [(q, ages[q] / 3600) for q in sorted(ages)], unit=" h", fmt="{:.1f}", floor=1.0
        ),
        "hour_chart": line_chart(per_hour),
        "share_chart": bar_chart(
            [(r["declared_category"], 100 * r["share"]) for r in shares], unit="%", fmt="{:.0f}"
        ),
        "reason_chart": bar_chart(
            [(r["key"], 100 * r["rate"]) for r in overturns["reason"]], unit="%", fmt="{:.0f}"
        ),
        "model_chart": bar_chart(
            [(r["key"], 100 * r["rate"]) for r in overturns["model"]], unit="%", fmt="{:.0f}"
        ),
        "overturns": overturns,
        "quality": quality,
        "snapshot_age_s": snapshot.age_s,
        "per_hour": {m: sum(v) for m, v in per_hour.items()},
    }
    return console.render(request, "metrics.html", context, user=user)
