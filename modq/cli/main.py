"""The `modq` command: the click group, error handling, and where each command group lives."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from modq.errors import ModqError, UsageError

# Exit statuses, the same for every command: 0 done, 1 the command ran and failed (a service
# down, a missing model, refused input), 2 the command line itself is wrong (click's own
# convention for usage errors, and modq's UsageError).
EXIT_FAILURE = 1
EXIT_USAGE = 2


# Each command's module is imported only when that command runs: `modq health`, which the
# containers run every 30 s, and `modq --version` stay cheap (importing every command group
# drags in SQLAlchemy, numba and ONNX Runtime: about 1.5 s of CPU).
COMMANDS = {
    "migrate": "modq.cli.submit:migrate",
    "submit": "modq.cli.submit:submit",
    "worker": "modq.cli.worker:worker",
    "recover": "modq.cli.recover:recover",
    "dead": "modq.cli.dead:dead_group",
    "verdicts": "modq.cli.verdicts:verdicts",
    "backfill": "modq.cli.backfill:backfill",
    "classify": "modq.cli.classify:classify",
    "bank": "modq.cli.bank:bank",
    "console": "modq.cli.console:console_cmd",
    "users": "modq.cli.console:users_group",
    "reviews": "modq.cli.console:reviews_group",
    "demo": "modq.cli.demo:demo",
    "health": "modq.cli.health:health",
}


class LazyGroup(click.Group):
    """A group whose commands are `module:attribute` names, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, target
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modq", prog_name="modq")
def main() -> None:
    """modq: automatic moderation of classified-ad listings.

    Configuration comes from MODQ_* environment variables (MODQ_BROKER_URL, MODQ_DATABASE_URL,
    MODQ_MODEL_PATH, MODQ_POLICY_PATH, MODQ_DATA_DIR, MODQ_IMAGE_ROOTS, MODQ_ALLOWED_HOSTS, ...);
    see docs/configuration.md.
    """


def run() -> Any:
    try:
        return main(standalone_mode=True)
    except UsageError as exc:
        click.echo(f"modq: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except ModqError as exc:
        click.echo(f"modq: error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    except Exception as exc:
        # The store and the broker translate what they expect at the boundary; this is the
        # net for what they do not (a database that was never migrated, say): one line, not a
        # traceback, for errors of the services modq talks to. Anything else is a bug and
        # keeps its traceback.
        line = _service_failure(exc)
        if line is None:
            raise
        click.echo(f"modq: error: {line}", err=True)
        sys.exit(EXIT_FAILURE)


def _service_failure(exc: Exception) -> str | None:
    """One line for an error raised by the database or broker client libraries, else None."""
    package = type(exc).__module__.split(".")[0]
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if package == "sqlalchemy":
        if "does not exist" in first or "no such table" in first:
            return f"database: {first}: is it migrated? run `modq migrate`"
        return f"database: {first}"
    if package in ("redis", "kombu", "amqp"):
        return f"broker: {first}"
    return None
