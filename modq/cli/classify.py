"""`modq classify`: the model on photo files or folders, no broker or database."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from modq.cli.photos import expand
from modq.settings import get_settings


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--top-k", type=int, default=3, show_default=True)
def classify(photos: Sequence[Path], top_k: int) -> None:
    """Classify photo files or folders; one JSON line per photo. No broker or database."""
    from modq.pipeline.classify import classify_files

    for row in classify_files(list(expand(photos)), get_settings(), top_k=top_k):
        click.echo(json.dumps(row))
