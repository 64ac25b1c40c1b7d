"""`modq verdicts` and `modq verdicts diff`: read verdicts and compare model or policy versions."""

from __future__ import annotations

import json
from datetime import datetime

import click

from modq.cli.context import cli_settings


@click.group(invoke_without_command=True)
@click.option("--decision", type=click.Choice(["approve", "reject", "review"]))
@click.option("--category", help="Declared category, e.g. fashion.shoes.")
@click.option("--since", type=click.DateTime(), help="Verdicts created at or after (UTC).")
@click.option("--listing", help="One listing id.")
@click.option("--limit", type=int, default=50, show_default=True, help="0 = all.")
@click.option("--history", is_flag=True, help="Every verdict row, not just current ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def verdicts(
    ctx: click.Context,
    decision: str | None,
    category: str | None,
    since: datetime | None,
    listing: str | None,
    limit: int,
    history: bool,
    as_json: bool,
) -> None:
    """List current verdicts, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from modq.cli.report import print_verdicts
    from modq.store.database import connected
    from modq.store.queries import query_verdicts

    with connected(cli_settings().database_url) as engine:
        rows = query_verdicts(
            engine,
            decision=decision,
            category=category,
            since=since,
            listing=listing,
            limit=limit,
            current_only=not history,
        )
    print_verdicts(rows, as_json=as_json)


@verdicts.command("diff")
@click.option("--from-model", help="Model version of the older verdicts.")
@click.option("--to-model", help="Model version of the newer verdicts.")
@click.option("--from-policy", help="Policy version of the older verdicts.")
@click.option("--to-policy", help="Policy version of the newer verdicts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per category × transition.")
def verdicts_diff(
    from_model: str | None,
    to_model: str | None,
    from_policy: str | None,
    to_policy: str | None,
    as_json: bool,
) -> None:
    """How decisions changed between two model versions and/or two policy versions, per
    category: e.g. after a backfill, `modq verdicts diff --from-model A --to-model B`.

    Counts the listings with verdicts on both sides for the same listing version (the latest
    one they share), by declared category and decision transition (review → approve, ...).
    """
    from modq.cli.report import format_diff
    from modq.store.database import connected
    from modq.store.history import Side, diff_verdicts

    if (from_model is None) != (to_model is None) or (from_policy is None) != (to_policy is None):
        raise click.UsageError("give --from-model with --to-model, --from-policy with --to-policy")
    if from_model is None and from_policy is None:
        raise click.UsageError("give --from-model/--to-model, --from-policy/--to-policy or both")
    old, new = Side(from_model, from_policy), Side(to_model, to_policy)
    with connected(cli_settings().database_url) as engine:
        rows = diff_verdicts(engine, old, new)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return

    def label(side: Side) -> str:
        parts = [f"model {side.model_version}"] if side.model_version else []
        return " ".join(parts + ([f"policy {side.policy_version}"] if side.policy_version else []))

    for line in format_diff(rows, label(old), label(new)):
        click.echo(line)
