"""`modq backfill`: re-queue stored (or exported) listings on the backfill queue."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from modq.cli.context import cli_settings


@click.command()
@click.option("--category", help="Only listings declared in this category, e.g. fashion.shoes.")
@click.option(
    "--since", type=click.DateTime(), help="Only listings created at or after this time (UTC)."
)
@click.option(
    "--until", type=click.DateTime(), help="Only listings created before this time (UTC)."
)
@click.option(
    "--decision",
    type=click.Choice(["approve", "reject", "review"]),
    help="Only listings whose current verdict has this decision.",
)
@click.option(
    "--stale",
    is_flag=True,
    help="Only listings whose current verdict was made by another model or policy version "
    "than the deployed ones, or that have no verdict.",
)
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Only these listing ids: a file with one id per line ('#' comments allowed).",
)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Queue the events of an export file (JSON lines, or CSV when it ends in .csv) instead "
    "of stored listings: for listings modq has never seen. Combines with --category/--since/"
    "--until; bad lines are reported with their line numbers and recorded in rejected_events.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also queue listings whose current verdict was made by the deployed model and policy "
    "(skipped as 'already current' otherwise).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print how many would be queued; publish and record nothing."
)
@click.option(
    "--job",
    help="Checkpoint name. Default: derived from the selection and the deployed model and "
    "policy versions, so running the same command again resumes it.",
)
@click.option("--restart", is_flag=True, help="Start the job over, discarding its checkpoint.")
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Listings read, published and checkpointed together (capped at the high-water mark).",
)
@click.option(
    "--high-water",
    type=click.IntRange(min=1),
    default=None,
    help="Most messages the backfill queue may hold; the command waits for workers above it. "
    "Default MODQ_BACKFILL_HIGH_WATER (10000).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (the summary is still printed).")
def backfill(
    category: str | None,
    since: datetime | None,
    until: datetime | None,
    decision: str | None,
    stale: bool,
    ids_file: Path | None,
    from_file: Path | None,
    force: bool,
    dry_run: bool,
    job: str | None,
    restart: bool,
    page_size: int,
    high_water: int | None,
    no_progress: bool,
) -> None:
    """Moderate old listings again on the backfill queue (moderation.backfill).

    Selects from the listings table (all of it unless filtered) or from an export file,
    publishes in pages while the backfill queue stays under the high-water mark, and keeps a
    checkpoint in PostgreSQL: run the same command again after a kill and it continues with no
    gaps. Listings already moderated by the deployed model and policy are skipped unless
    --force. Workers drain moderation.new first; see docs/backfill.md.
    """
    from modq.backfill.run import run_backfill
    from modq.backfill.selection import Selection
    from modq.store.database import connected

    if from_file is not None and (ids_file is not None or decision is not None or stale):
        raise click.UsageError("--from-file does not combine with --ids-file, --decision, --stale")
    settings = cli_settings()
    selection = Selection(
        category=category,
        since=since,
        until=until,
        decision=decision,
        stale=stale,
        force=force,
        ids_file=ids_file,
        from_file=from_file,
    )
    with connected(settings.database_url) as engine:
        report = run_backfill(
            engine,
            settings,
            selection,
            job=job,
            restart=restart,
            dry_run=dry_run,
            page_size=page_size,
            high_water=high_water,
            progress=not no_progress,
        )
    for problem in report.problems:
        click.echo(f"skipped {problem}", err=True)
    if report.this_run.skipped > len(report.problems):
        more = report.this_run.skipped - len(report.problems)
        click.echo(f"... and {more} more skipped (events in rejected_events)", err=True)
    if report.already_finished:
        click.echo(f"job {report.job} already finished: {report.summary()}")
        click.echo("run with --restart to run it again")
        return
    if dry_run:
        c = report.this_run
        click.echo(
            f"dry run, job {report.job}: would queue {c.queued}, skip {c.skipped}, "
            f"already current {c.already_current}"
            + (f", not selected {c.not_selected}" if c.not_selected else "")
        )
        return
    resumed = " (resumed)" if report.resumed else ""
    click.echo(f"job {report.job}{resumed}: {report.summary()}")
