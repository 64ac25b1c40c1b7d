"""`modq console`, `modq users add|list` and `modq reviews export|sync`: the review console's
commands (docs/console.md)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from modq.cli.context import cli_settings


@click.command("console")
@click.option("--host", default=None, help="Address to listen on [MODQ_CONSOLE_HOST].")
@click.option("--port", type=int, default=None, help="Port [MODQ_CONSOLE_PORT].")
def console_cmd(host: str | None, port: int | None) -> None:
    """Serve the moderator review console (log in with an account from `modq users add`)."""
    import uvicorn

    from modq.console.app import create_app

    settings = cli_settings()
    host = host or settings.console_host
    port = port or settings.console_port
    click.echo(f"modq console on http://{host}:{port}/")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", proxy_headers=False)


@click.group("users")
def users_group() -> None:
    """Console accounts: moderator, lead or admin."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["moderator", "lead", "admin"]),
    default="moderator",
    show_default=True,
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
def users_add(name: str, role: str, password_stdin: bool) -> None:
    """Create account NAME (or reset its role and password). The password is prompted for,
    or read from stdin when it is not a terminal or with --password-stdin."""
    from modq.console.auth import add_user
    from modq.store.database import connected

    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with connected(cli_settings().database_url) as engine:
        created = add_user(engine, name, role, password)
    click.echo(f"user {name} ({role}) {'created' if created else 'updated'}")


@users_group.command("list")
def users_list() -> None:
    """Every console account with its role."""
    from modq.store.database import connected
    from modq.store.users import list_users

    with connected(cli_settings().database_url) as engine:
        users = list_users(engine)
    for name, role in users:
        click.echo(f"{name}\t{role}")


@click.group("reviews")
def reviews_group() -> None:
    """Human review decisions: export them as training labels."""


@reviews_group.command("export")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default="1970-01-01",
    help="Decisions made at or after this date (UTC).",
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def reviews_export(since: datetime, out_dir: Path) -> None:
    """Write the human labels to OUT in the layout `modq-train prepare --extra` reads:
    re-categorised listings' photos under the corrected category, rejected banned items
    under their reason, and labels.jsonl describing every photo."""
    from modq.backfill.label_export import export_labels

    report = export_labels(cli_settings(), since.replace(tzinfo=UTC), out_dir)
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"exported {report.photos} photos from {report.listings} decisions to {out_dir}")


@reviews_group.command("sync")
def reviews_sync() -> None:
    """File every current `review` verdict as a job (for verdicts saved before migration 0005)."""
    from modq.store.database import connected
    from modq.store.reviews import sync_review_jobs

    with connected(cli_settings().database_url) as engine:
        sync_review_jobs(engine)
    click.echo("review queue synced")
