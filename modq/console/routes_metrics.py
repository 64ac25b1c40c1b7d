"""Metrics page: queue depth and age, throughput, time to decision, automation share and
overturn rates, drawn as inline SVG."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modq.console.charts import bar_chart, line_chart
from modq.console.deps import ConsoleDep, UserDep

router = APIRouter()


@router.get("/metrics")
def metrics_page(request: Request, console: ConsoleDep, user: UserDep) -> Response:
    # A snapshot at most a minute old (its age shown): the aggregates read every listing.
    snapshot = console.metrics.get()
    v = snapshot.values
    counts, ages, per_hour, median = v["counts"], v["ages"], v["per_hour"], v["median"]
    shares, overturns, quality = v["shares"], v["overturns"], v["quality"]
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
        "cache_s": console.settings.console_metrics_cache_s,
        "per_hour": {m: sum(v) for m, v in per_hour.items()},
    }
    return console.render(request, "metrics.html", context, user=user)
