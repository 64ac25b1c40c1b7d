"""`modq health`: the container health check of every modq service, in one command the
image's HEALTHCHECK and docker-compose.yml run (python:3.11-slim has neither curl nor wget).

A worker answers on its metrics port (`/healthz`: broker and database), the console on its
own port (`/healthz`: database), and `modq recover --every`, which serves nothing, touches a
heartbeat file after each pass.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

import click

from modq.cli.context import cli_settings
from modq.cli.recover import heartbeat_path, parse_duration


@click.command()
@click.option(
    "--url",
    default=None,
    help="GET this URL; healthy on a 2xx answer within --timeout (default: this host's worker "
    "/healthz on MODQ_METRICS_PORT).",
)
@click.option(
    "--heartbeat",
    "heartbeat",
    is_flag=True,
    help="Check `modq recover --every`'s heartbeat file instead of a URL.",
)
@click.option(
    "--max-age",
    default="5m",
    show_default=True,
    help="With --heartbeat: the longest time since the last pass that is still healthy.",
)
@click.option("--timeout", type=float, default=5.0, show_default=True)
def health(url: str | None, heartbeat: bool, max_age: str, timeout: float) -> None:
    """Exit 0 when the service on this host is healthy, 1 (with the reason) when it is not."""
    if heartbeat:
        path = heartbeat_path(cli_settings())
        if not path.is_file():
            _unhealthy(f"no heartbeat at {path} yet")
        age = time.time() - path.stat().st_mtime
        if age > parse_duration(max_age):
            _unhealthy(f"last recover pass {age:.0f} s ago (over {max_age})")
        click.echo(f"ok: last recover pass {age:.0f} s ago")
        return
    if url is None:
        port = cli_settings().metrics_port
        if port is None:
            raise click.UsageError("no --url and no MODQ_METRICS_PORT to find /healthz on")
        url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            click.echo(f"ok: {url} answered {answer.status}")
    except urllib.error.HTTPError as exc:
        _unhealthy(f"{url} answered {exc.code}: {exc.read()[:200].decode(errors='replace')}")
    except (OSError, ValueError) as exc:
        _unhealthy(f"{url}: {exc}")


def _unhealthy(reason: str) -> None:
    click.echo(f"unhealthy: {reason}", err=True)
    sys.exit(1)
