"""`modq recover`: re-queue accepted listings that have no verdict or rejection yet."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from modq.cli.context import cli_settings
from modq.settings import Settings


def heartbeat_path(settings: Settings) -> Path:
    """The file `modq recover --every` touches after each pass that worked."""
    return settings.data_dir / "recover.heartbeat"


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '2h' or '1d' as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 60s, 5m or 2h")
    return float(match.group(1)) * _UNITS[match.group(2)]


@click.command()
@click.option(
    "--older-than",
    default="60s",
    show_default=True,
    help="Only listings accepted at least this long ago (60s, 5m, 2h): younger ones are "
    "probably still queued.",
)
@click.option("--limit", type=int, default=None, help="Re-queue at most this many per pass.")
@click.option(
    "--every",
    default=None,
    help="Keep running: one pass every DURATION (e.g. 60s), as a deployment's sidecar does.",
)
def recover(older_than: str, limit: int | None, every: str | None) -> None:
    """Re-publish accepted listings (intake table) that have no verdict or rejection yet:
    after a broker lost its messages, or a publish failed after the listing was accepted."""
    from modq.errors import RetryableError
    from modq.ingest.recover import recover as run_recover

    settings = cli_settings()
    while True:
        try:
            report = run_recover(settings, parse_duration(older_than), limit)
            click.echo(f"re-queued {report.requeued}")
            # `modq health --heartbeat` (the compose service's health check) reads its age:
            # touched only after a pass that worked, so a recover that cannot reach the
            # database or the broker turns unhealthy.
            heartbeat = heartbeat_path(settings)
            heartbeat.parent.mkdir(parents=True, exist_ok=True)
            heartbeat.touch()
        except RetryableError as exc:
            if every is None:
                raise
            click.echo(f"recover: {exc}; trying again in {every}", err=True)
        if every is None:
            return
        time.sleep(parse_duration(every))
