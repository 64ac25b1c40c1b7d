"""`modq bank import|export`: PDQ hash lists in the formats exchanges use (HMA `pdq <hex>`
lines, CSV with hash / content id / note columns, plain hex)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modq.cli.context import cli_settings
from modq.detectors.hash_lists import FORMATS, ListedHash, format_hash_list, parse_hash_list
from modq.settings import Settings
from modq.store.banks import add_to_bank, bank_entries
from modq.store.database import connected
from modq.store.interface import BankEntry


def import_list(settings: Settings, bank: str, path: Path) -> tuple[int, int, list[str]]:
    """Add every good line of the list at `path` to `bank`.

    Returns (hashes added, hashes read, errors as "line N: why"); nothing is written when no
    line holds a hash."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc
    parsed = parse_hash_list(text)
    entries = [
        BankEntry(e.hash, e.quality, f"import:{path.name}", e.content_id, e.note, e.enabled)
        for e in parsed.entries
    ]
    with connected(settings.database_url) as engine:
        added = add_to_bank(engine, bank, entries)
    return added, len(entries), parsed.errors


@click.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def bank_import(name: str, file: Path) -> None:
    """Import the PDQ hashes of FILE into bank NAME, creating it if needed.

    FILE holds HMA/ThreatExchange `pdq <hex>` lines, a CSV with a header row (hash, and
    optionally content_id, note, quality, enabled), or one 64-digit hex hash per line. Bad lines
    are reported with their line numbers and skipped; the others are imported."""
    added, read, errors = import_list(cli_settings(), name, file)
    for line in errors:
        click.echo(f"{file}: {line}", err=True)
    if not read:
        raise click.ClickException(
            f"no PDQ hash in {file} ({len(errors)} bad lines): bank {name} not created or changed"
        )
    click.echo(
        f"bank {name}: {added} hashes added, {read - added} already there,"
        f" {len(errors)} bad lines skipped"
    )


@click.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bank_export(name: str, fmt: str, output: Path | None) -> None:
    """Write bank NAME's hashes to stdout (or --output): `csv` with content ids, notes,
    quality and enabled; `hma` (`pdq <hex>` lines) and `hex` list the enabled hashes."""
    with connected(cli_settings().database_url) as engine:
        entries = bank_entries(engine, name)
    listed = [ListedHash(e.hash, e.content_id, e.note, e.quality, e.enabled) for e in entries]
    text = format_hash_list(listed, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"bank {name}: {len(entries)} hashes written to {output}", err=True)
