"""The settings of one `modq` command: read from the environment once, on first use, and kept
on the command line's root click context.

Every command asks `cli_settings()` rather than reading the environment itself, so a command
run twice in one process (tests with click's CliRunner) reads the environment of each run,
and nothing below the CLI reads it at all: settings are handed down from here.
"""

from __future__ import annotations

import click

from modq.settings import Settings, load_settings


def cli_settings() -> Settings:
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj
