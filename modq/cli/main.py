"""The `modq` command: submit events, run a worker, read verdicts, classify photos, migrate."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import click

from modq.errors import ModqError
from modq.settings import get_settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """modq: automatic moderation of classified-ad listings.

    Configuration comes from MODQ_* environment variables (MODQ_BROKER_URL, MODQ_DATABASE_URL,
    MODQ_MODEL_PATH, MODQ_POLICY_PATH, MODQ_DATA_DIR, MODQ_IMAGE_ROOTS, MODQ_ALLOWED_HOSTS, ...);
    see docs/configuration.md.
    """


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
def migrate(revision: str) -> None:
    """Apply the database migrations (Alembic) to MODQ_DATABASE_URL."""
    from modq.store.verdicts import migrate as run_migrations

    settings = get_settings()
    run_migrations(settings.database_url, revision)
    click.echo(f"database at {revision}")


@main.command()
@click.argument("events_file", type=click.File("r"))
@click.option("--backfill", is_flag=True, help="Publish on the backfill queue instead of new.")
def submit(events_file: TextIO, backfill: bool) -> None:
    """Validate EVENTS_FILE (JSON lines, '-' for stdin) and publish the good events.

    Bad lines are reported with their line numbers and recorded in rejected_events; the exit
    status is 1 when any line was rejected.
    """
    from modq.ingest.submit_file import submit_lines

    report = submit_lines(events_file, get_settings(), source="backfill" if backfill else "new")
    for line_no, reason in report.rejected:
        click.echo(f"line {line_no}: rejected: {reason}", err=True)
    click.echo(f"queued {report.queued}, rejected {len(report.rejected)}")
    if report.rejected:
        sys.exit(1)


@main.command()
@click.option(
    "--queues",
    type=click.Choice(["all", "new", "backfill"]),
    default="all",
    show_default=True,
    help="'all' drains new listings before backfill; 'backfill' makes a dedicated pool.",
)
@click.option("--gpu", type=int, default=None, help="Pin this process to one GPU (one per GPU).")
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=1,
    show_default=True,
    help="Batches in flight at once (threads sharing one ONNX session).",
)
@click.option("--loglevel", default=None, help="Celery log level (default MODQ_LOG_LEVEL).")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=0,
    show_default=True,
    help="Lower this worker's CPU priority by N (os.nice), e.g. 19 for a backfill pool that "
    "must never slow the new-listing pool on the same machine.",
)
def worker(queues: str, gpu: int | None, concurrency: int, loglevel: str | None, nice: int) -> None:
    """Run a Celery worker: consume listing events, write verdicts."""
    if nice:
        # First thing, before any thread exists: on Linux the nice value is per thread and new
        # threads (Celery's pool, ONNX Runtime's) inherit it from the one that starts them.
        os.nice(nice)
    if gpu is not None:
        # Must happen before onnxruntime initialises CUDA; the process then sees one GPU as 0.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from modq.ingest.broker import app, settings

    names = {"new": [settings.queue_new], "backfill": [settings.queue_backfill]}
    order = names.get(queues, [settings.queue_new, settings.queue_backfill])
    app.worker_main(
        [
            "worker",
            "--queues", ",".join(order),
            # Threads, not prefork: the ONNX session lives in this process and is never forked.
            "--pool", "threads",
            "--concurrency", str(concurrency),
            "--loglevel", loglevel or settings.log_level,
            "--without-gossip", "--without-mingle",
        ]
    )  # fmt: skip


@main.group(invoke_without_command=True)
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
    from modq.store import verdicts as store

    engine = store.make_engine(get_settings().database_url)
    rows = store.query_verdicts(
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
    from modq.store import verdicts as store
    from modq.store.history import Side, diff_verdicts, format_diff

    if (from_model is None) != (to_model is None) or (from_policy is None) != (to_policy is None):
        raise click.UsageError("give --from-model with --to-model, --from-policy with --to-policy")
    if from_model is None and from_policy is None:
        raise click.UsageError("give --from-model/--to-model, --from-policy/--to-policy or both")
    old, new = Side(from_model, from_policy), Side(to_model, to_policy)
    engine = store.make_engine(get_settings().database_url)
    try:
        rows = diff_verdicts(engine, old, new)
    finally:
        engine.dispose()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return

    def label(side: Side) -> str:
        parts = [f"model {side.model_version}"] if side.model_version else []
        return " ".join(parts + ([f"policy {side.policy_version}"] if side.policy_version else []))

    for line in format_diff(rows, label(old), label(new)):
        click.echo(line)


@main.command()
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
    from modq.backfill.run import Selection, run_backfill
    from modq.store import verdicts as store

    if from_file is not None and (ids_file is not None or decision is not None or stale):
        raise click.UsageError("--from-file does not combine with --ids-file, --decision, --stale")
    settings = get_settings()
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
    engine = store.make_engine(settings.database_url)
    try:
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
    finally:
        engine.dispose()
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


@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option(
    "--detectors",
    default="",
    help="Comma-separated image detectors to run too (nudity, contacts); by default only the "
    "category model and the heads in its graph (prohibited items) run.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def classify(photos: Sequence[Path], top_k: int, detectors: str, progress: bool) -> None:
    """Classify photo files or folders; one JSON line per photo, streamed in input order as
    results arrive. No broker or database."""
    from tqdm import tqdm

    from modq.pipeline.classify import classify_files

    paths = list(_expand(photos))
    names = [d.strip() for d in detectors.split(",") if d.strip()]
    with tqdm(total=len(paths), unit="photo", disable=not progress, file=sys.stderr) as bar:
        for row in classify_files(paths, get_settings(), top_k=top_k, detectors=names):
            click.echo(json.dumps(row))
            sys.stdout.flush()
            bar.update()


def _expand(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


@main.command()
@click.option("--listings", type=int, default=100, show_default=True)
@click.option("--timeout", type=float, default=600, show_default=True)
def demo(listings: int, timeout: float) -> None:
    """Moderate sample listings built from the shared photos end to end and print verdicts."""
    from modq.cli.demo import run_demo

    run_demo(get_settings(), listings=listings, timeout_s=timeout)


@main.group()
def bank() -> None:
    """Image banks: PDQ hashes of banned photos; a listing photo within the policy's
    distance of any of them is rejected with `banned_image: bank NAME`."""


@bank.command("add")
@click.argument("name")
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def bank_add(name: str, photos: Sequence[Path]) -> None:
    """Hash PHOTOS (files or folders) into bank NAME, creating it if needed."""
    from modq.cli.bank import add_photos

    added, skipped = add_photos(get_settings(), name, list(_expand(photos)))
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"bank {name}: {added} hashes added, {len(skipped)} photos skipped")


@bank.command("list")
def bank_list() -> None:
    """Every bank with its number of hashes."""
    from modq.store.banks import list_banks
    from modq.store.verdicts import make_engine

    for row in list_banks(make_engine(get_settings().database_url)):
        click.echo(f"{row['name']}\t{row['hashes']} hashes\tcreated {row['created_at']:%Y-%m-%d}")


@bank.command("remove")
@click.argument("name")
@click.argument("photos", nargs=-1, type=click.Path(exists=True, path_type=Path))
def bank_remove(name: str, photos: Sequence[Path]) -> None:
    """Remove bank NAME entirely, or only the hashes of PHOTOS from it."""
    from modq.cli.bank import remove_photos

    removed = remove_photos(get_settings(), name, list(_expand(photos)) or None)
    click.echo(f"bank {name}: {removed} hashes removed" + ("" if photos else ", bank deleted"))


def run() -> Any:
    try:
        return main(standalone_mode=True)
    except ModqError as exc:
        click.echo(f"modq: error: {exc}", err=True)
        sys.exit(2)
