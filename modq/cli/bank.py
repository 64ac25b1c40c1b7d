"""`modq bank add|import|export|list|remove|disable|enable`: edit the image banks.

`add` hashes photo files with PDQ (the same decode and size as the worker); `import` and
`export` read and write the hash lists exchanges hand out (`modq.detectors.hash_lists`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from modq.cli.bank_lists import bank_export, bank_import
from modq.cli.context import cli_settings
from modq.cli.photos import expand
from modq.detectors.hashing import PhotoHash, parse_hex
from modq.errors import PhotoError
from modq.pipeline.decode import hash_photo
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.banks import add_to_bank, list_banks, remove_from_bank, set_enabled
from modq.store.database import connected
from modq.store.interface import BankEntry

_HASH_LIST_SUFFIXES = {".txt", ".csv", ".tsv", ".hashes"}


def hash_file(path: Path, settings: Settings) -> PhotoHash:
    """PDQ hash of a photo file, exactly as the worker hashes listing photos."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PhotoError(f"cannot read {path}: {exc.strerror}") from exc
    return hash_photo(data, settings.max_image_pixels)


def add_photos(settings: Settings, bank: str, paths: list[Path]) -> tuple[int, list[str]]:
    """Add the photos' hashes to `bank`; photos that cannot be decoded or whose hash is of
    too low quality to match reliably are skipped and described."""
    min_quality = Policy.load(settings.policy_path).banks.min_quality
    entries, skipped = [], []
    for path in paths:
        try:
            h = hash_file(path, settings)
        except PhotoError as exc:
            hint = ""
            if path.suffix.lower() in _HASH_LIST_SUFFIXES:
                hint = f" (a list of hashes? use `modq bank import {bank} {path}`)"
            skipped.append(f"{path}: {exc}{hint}")
            continue
        if h.quality < min_quality:
            skipped.append(f"{path}: PDQ quality {h.quality} < {min_quality} (too flat to match)")
            continue
        entries.append(BankEntry(h.bytes, h.quality, str(path)))
    with connected(settings.database_url) as engine:
        return add_to_bank(engine, bank, entries), skipped


def remove_photos(
    settings: Settings,
    bank: str,
    paths: list[Path] | None,
    hashes: Sequence[str] = (),
    content_ids: Sequence[str] = (),
) -> int:
    """Remove the photos' hashes, the given hex hashes and content ids from `bank`, or the whole
    bank when nothing is given."""
    picked = [hash_file(p, settings).bytes for p in paths or []] + [parse_hex(h) for h in hashes]
    whole = not picked and not content_ids
    with connected(settings.database_url) as engine:
        return remove_from_bank(
            engine, bank, None if whole else picked, None if whole else list(content_ids)
        )


@click.group()
def bank() -> None:
    """Image banks: PDQ hashes of banned photos; a listing photo (or a rotation or mirror of it)
    within the policy's distance of an enabled hash is rejected with `banned_image: bank NAME`
    and the hash's content id and note."""


bank.add_command(bank_import)
bank.add_command(bank_export)


@bank.command("add")
@click.argument("name")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
def bank_add(name: str, photos: Sequence[Path]) -> None:
    """Hash PHOTOS (image files or folders) into bank NAME, creating it if needed.

    Lists of hashes (HMA, CSV, hex) go through `modq bank import`."""
    for path in photos:
        if path.exists():
            continue
        try:
            parse_hex(str(path))
        except ValueError:
            raise click.BadParameter(f"{path} does not exist", param_hint="PHOTOS") from None
        raise click.BadParameter(
            f"{str(path)[:16]}... is a PDQ hash, not a photo: write hashes to a file, one per"
            f" line, and run `modq bank import {name} FILE`",
            param_hint="PHOTOS",
        )
    added, skipped = add_photos(cli_settings(), name, list(expand(photos)))
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    if not added and skipped:
        raise click.ClickException(f"bank {name}: no photo could be added ({len(skipped)} skipped)")
    click.echo(f"bank {name}: {added} hashes added, {len(skipped)} photos skipped")


@bank.command("list")
def bank_list() -> None:
    """Every bank with its number of hashes (and how many are disabled)."""
    with connected(cli_settings().database_url) as engine:
        banks = list_banks(engine)
    for row in banks:
        off = f" ({row['disabled']} disabled)" if row["disabled"] else ""
        state = "" if row["enabled"] else "\tBANK DISABLED"
        created = f"created {row['created_at']:%Y-%m-%d}"
        click.echo(f"{row['name']}\t{row['hashes']} hashes{off}\t{created}{state}")


def _hex_hashes(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[str]:
    try:
        return [parse_hex(v).hex() for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


_HASH = click.option(
    "--hash", "hashes", multiple=True, callback=_hex_hashes, help="a PDQ hash (64 hex digits)"
)
_CONTENT = click.option("--content-id", "content_ids", multiple=True, help="a content id")


@bank.command("remove")
@click.argument("name")
@click.argument("photos", nargs=-1, type=click.Path(exists=True, path_type=Path))
@_HASH
@_CONTENT
@click.option("--yes", is_flag=True, help="remove a whole bank without asking")
def bank_remove(
    name: str,
    photos: Sequence[Path],
    hashes: Sequence[str],
    content_ids: Sequence[str],
    yes: bool,
) -> None:
    """Remove hashes from bank NAME (of PHOTOS, --hash, --content-id), or the whole bank."""
    settings = cli_settings()
    paths = list(expand(photos))
    whole = not paths and not hashes and not content_ids
    if whole and not yes:
        click.confirm(f"Delete bank {name} and every hash in it?", abort=True)
    removed = remove_photos(settings, name, paths, hashes, content_ids)
    if not whole and not removed:
        raise click.ClickException(f"bank {name}: none of those hashes is in it")
    click.echo(f"bank {name}: {removed} hashes removed" + (", bank deleted" if whole else ""))


def _switch(name: str, enabled: bool, hashes: Sequence[str], content_ids: Sequence[str]) -> None:
    word = "enabled" if enabled else "disabled"
    with connected(cli_settings().database_url) as engine:
        if not hashes and not content_ids:
            set_enabled(engine, name, enabled)
            click.echo(f"bank {name} {word}")
            return
        picked = [parse_hex(h) for h in hashes]
        n = set_enabled(engine, name, enabled, picked, list(content_ids))
    if not n:
        raise click.ClickException(f"bank {name}: none of those hashes is in it")
    click.echo(f"bank {name}: {n} hashes {word}")


@bank.command("disable")
@click.argument("name")
@_HASH
@_CONTENT
def bank_disable(name: str, hashes: Sequence[str], content_ids: Sequence[str]) -> None:
    """Stop matching bank NAME, or only some of its hashes; nothing is deleted. Workers
    follow within MODQ_BANK_REFRESH_S."""
    _switch(name, False, hashes, content_ids)


@bank.command("enable")
@click.argument("name")
@_HASH
@_CONTENT
def bank_enable(name: str, hashes: Sequence[str], content_ids: Sequence[str]) -> None:
    """Match bank NAME (or the given hashes of it) again."""
    _switch(name, True, hashes, content_ids)
