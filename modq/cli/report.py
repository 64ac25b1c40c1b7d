"""Human-readable and JSON-lines output of verdicts for moderators' terminals."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from modq.domain.reasons import read_all
from modq.domain.verdicts import DECISIONS

COLUMNS = [
    ("listing_id", 18),
    ("declared_category", 20),
    ("decision", 8),
    ("suggested", 28),
    ("human_decision", 24),
]


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "suggested":
        if not value:
            return "-"
        category, score = value[0]
        return f"{category} ({score:.2f})"
    if key == "human_decision":  # the review console's final decision, if any
        if value == "recategorise":
            return f"→ {row.get('human_category')}"
        return "-" if value is None else str(value)
    return "" if value is None else str(value)


def print_verdicts(rows: Sequence[dict[str, Any]], *, as_json: bool = False) -> None:
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=_json_default))
        return
    header = "  ".join(name.ljust(width) for name, width in COLUMNS) + "  reasons"
    click.echo(header)
    click.echo("-" * len(header))
    for row in rows:
        cells = [_cell(row, name)[:width].ljust(width) for name, width in COLUMNS]
        reasons = "; ".join(r.text() for r in read_all(row.get("reasons"))) or "-"
        click.echo("  ".join(cells) + "  " + reasons)
    counts = Counter(row["decision"] for row in rows)
    summary = ", ".join(f"{counts[d]} {d}" for d in ("approve", "review", "reject"))
    click.echo(f"\n{len(rows)} verdicts: {summary}")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_diff(rows: list[dict[str, Any]], old: str, new: str) -> list[str]:
    """A per-category table of transitions for a terminal, with the changed share."""
    if not rows:
        return [f"no listing has verdicts under both {old} and {new}"]
    order = {d: i for i, d in enumerate(DECISIONS)}
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    width = max(20, *(len(c) for c in by_category))
    lines = [f"{old} → {new}", "", f"{'category':<{width}}  {'from':<8}    {'to':<8}  listings"]
    lines.append("-" * len(lines[-1]))
    total = changed = 0
    for category in sorted(by_category):
        group = sorted(by_category[category], key=lambda r: (order[r["from"]], order[r["to"]]))
        n = sum(r["listings"] for r in group)
        moved = sum(r["listings"] for r in group if r["from"] != r["to"])
        total, changed = total + n, changed + moved
        for i, row in enumerate(group):
            name = category if i == 0 else ""
            arrow = "→" if row["from"] != row["to"] else "="
            lines.append(
                f"{name:<{width}}  {row['from']:<8} {arrow}  {row['to']:<8}  {row['listings']:>8}"
            )
        lines.append(f"{'':<{width}}  changed {moved} of {n} ({moved / n:.1%})")
    lines.append("")
    lines.append(f"{changed} of {total} listings changed decision ({changed / total:.1%})")
    return lines
