"""`modq migrate` and `modq submit`: prepare the database, put events on the broker."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from modq.cli.context import cli_settings


@click.command()
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
def migrate(revision: str) -> None:
    """Apply the database migrations (Alembic) to MODQ_DATABASE_URL.

    Prints the revision the database is at afterwards. Migrations only go forward: a
    revision older than the database's current one leaves it where it is, and says so.
    """
    from modq.store.database import head_revision
    from modq.store.database import migrate as run_migrations

    settings = cli_settings()
    reached = run_migrations(settings.database_url, revision)
    head = head_revision()
    where = f"database at {reached}" + (" (head)" if reached == head else "")
    if revision not in ("head", "heads", reached):
        where += f"; {revision} is older, and migrate never downgrades"
    click.echo(where)


@click.command()
@click.argument("events_file", type=click.File("rb"))
@click.option("--backfill", is_flag=True, help="Publish on the backfill queue instead of new.")
def submit(events_file: BinaryIO, backfill: bool) -> None:
    """Validate EVENTS_FILE (JSON lines, '-' for stdin) and publish the good events.

    Bad lines are reported with their line numbers and recorded in rejected_events; the exit
    status is 1 when any line was rejected.
    """
    from modq.ingest.submit_file import submit_lines

    report = submit_lines(events_file, cli_settings(), source="backfill" if backfill else "new")
    for line_no, reason in report.rejected:
        click.echo(f"line {line_no}: rejected: {reason}", err=True)
    click.echo(f"queued {report.queued}, rejected {len(report.rejected)}")
    if report.rejected:
        sys.exit(1)
