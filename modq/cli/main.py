"""The `modq` command: the click group, error handling, and where each command group lives."""

from __future__ import annotations

import sys
from typing import Any

import click

from modq.cli.backfill import backfill
from modq.cli.bank import bank
from modq.cli.classify import classify
from modq.cli.console import console_cmd, reviews_group, users_group
from modq.cli.dead import dead_group
from modq.cli.demo import demo
from modq.cli.recover import recover
from modq.cli.submit import migrate, submit
from modq.cli.verdicts import verdicts
from modq.cli.worker import worker
from modq.errors import ModqError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """modq: automatic moderation of classified-ad listings.

    Configuration comes from MODQ_* environment variables (MODQ_BROKER_URL, MODQ_DATABASE_URL,
    MODQ_MODEL_PATH, MODQ_POLICY_PATH, MODQ_DATA_DIR, MODQ_IMAGE_ROOTS, MODQ_ALLOWED_HOSTS, ...);
    see docs/configuration.md.
    """


for command in (
    migrate,
    submit,
    worker,
    recover,
    dead_group,
    verdicts,
    backfill,
    classify,
    bank,
    console_cmd,
    users_group,
    reviews_group,
    demo,
):
    main.add_command(command)


def run() -> Any:
    try:
        return main(standalone_mode=True)
    except ModqError as exc:
        click.echo(f"modq: error: {exc}", err=True)
        sys.exit(2)
