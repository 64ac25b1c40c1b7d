"""Human-readable and JSON-lines output of verdicts for moderators' terminals."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

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
        reasons = "; ".join(row.get("reasons") or []) or "-"
        click.echo("  ".join(cells) + "  " + reasons)
    counts = Counter(row["decision"] for row in rows)
    summary = ", ".join(f"{counts[d]} {d}" for d in ("approve", "review", "reject"))
    click.echo(f"\n{len(rows)} verdicts: {summary}")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
