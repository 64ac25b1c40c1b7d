"""`modq classify`: the model on photo files or folders, no broker or database."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from tqdm import tqdm

from modq.cli.context import cli_settings
from modq.cli.photos import expand


@click.command()
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
    from modq.pipeline.classify import classify_files

    paths = list(expand(photos))
    names = [d.strip() for d in detectors.split(",") if d.strip()]
    with tqdm(total=len(paths), unit="photo", disable=not progress, file=sys.stderr) as bar:
        for row in classify_files(paths, cli_settings(), top_k=top_k, detectors=names):
            click.echo(json.dumps(row))
            sys.stdout.flush()
            bar.update()
