"""`modq dead list|replay|drop`: the dead-letter queues (`<queue>.dead`)."""

from __future__ import annotations

import json
from typing import Any

import click

from modq.cli.context import cli_settings

_WHICH = click.option(
    "--queue",
    "which",
    type=click.Choice(["all", "new", "backfill"]),
    default="all",
    show_default=True,
    help="Whose dead-letter queue.",
)


@click.group("dead")
def dead_group() -> None:
    """Inspect, replay or drop messages parked in the dead-letter queues."""


@dead_group.command("list")
@_WHICH
@click.option("--limit", type=int, default=100, show_default=True, help="Per queue; 0 = all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(which: Any, limit: int, as_json: bool) -> None:
    """Show parked messages, oldest first, without removing them."""
    from modq.ingest.dead import list_parked

    parked = list_parked(cli_settings(), which, limit)
    for p in parked:
        if as_json:
            click.echo(json.dumps({"queue": p.queue, **p.body}, ensure_ascii=False))
        else:
            attempt = p.body.get("attempt", 0)
            click.echo(f"{p.queue}\t{p.listing_id}\tattempt {attempt}\t{p.error}")
    if not as_json:
        click.echo(f"{len(parked)} parked", err=True)


@dead_group.command("replay")
@_WHICH
@click.argument("listing_ids", nargs=-1)
def replay_command(which: Any, listing_ids: tuple[str, ...]) -> None:
    """Publish parked messages (all, or those of LISTING_IDS) to their queue again."""
    from modq.ingest.dead import replay

    n = replay(cli_settings(), set(listing_ids) or None, which)
    click.echo(f"replayed {n}")


@dead_group.command("drop")
@_WHICH
@click.argument("listing_ids", nargs=-1)
@click.option("--all", "drop_all", is_flag=True, help="Drop every parked message.")
def drop_command(which: Any, listing_ids: tuple[str, ...], drop_all: bool) -> None:
    """Remove parked messages (LISTING_IDS, or --all), recording each as rejected."""
    from modq.ingest.dead import drop

    if not listing_ids and not drop_all:
        raise click.UsageError("name the listings to drop, or pass --all")
    n = drop(cli_settings(), set(listing_ids) or None, which)
    click.echo(f"dropped {n}")
