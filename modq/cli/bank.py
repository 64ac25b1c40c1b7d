"""`modq bank add|list|remove`: hash photo files with PDQ and edit the image banks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from modq.cli.photos import expand
from modq.detectors.hashing import PhotoHash, pdq_hash
from modq.domain.preprocess import PreprocessSpec
from modq.errors import PhotoError
from modq.pipeline.decode import decode_image
from modq.policy.policy import Policy
from modq.settings import Settings, get_settings
from modq.store.banks import add_to_bank, list_banks, remove_from_bank
from modq.store.database import make_engine
from modq.store.interface import BankEntry


def hash_file(path: Path, settings: Settings) -> PhotoHash:
    """PDQ hash of a photo file, decoded exactly as the worker decodes listing photos."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PhotoError(f"cannot read {path}: {exc.strerror}") from exc
    return pdq_hash(decode_image(data, PreprocessSpec(resize=512), settings.max_image_pixels))


def add_photos(settings: Settings, bank: str, paths: list[Path]) -> tuple[int, list[str]]:
    """Add the photos' hashes to `bank`; photos that cannot be decoded or whose hash is of
    too low quality to match reliably are skipped and described."""
    min_quality = Policy.load(settings.policy_path).banks.min_quality
    entries, skipped = [], []
    for path in paths:
        try:
            h = hash_file(path, settings)
        except PhotoError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        if h.quality < min_quality:
            skipped.append(f"{path}: PDQ quality {h.quality} < {min_quality} (too flat to match)")
            continue
        entries.append(BankEntry(h.bytes, h.quality, str(path)))
    return add_to_bank(make_engine(settings.database_url), bank, entries), skipped


def remove_photos(settings: Settings, bank: str, paths: list[Path] | None) -> int:
    hashes = None if paths is None else [hash_file(p, settings).bytes for p in paths]
    return remove_from_bank(make_engine(settings.database_url), bank, hashes)


@click.group()
def bank() -> None:
    """Image banks: PDQ hashes of banned photos; a listing photo within the policy's
    distance of any of them is rejected with `banned_image: bank NAME`."""


@bank.command("add")
@click.argument("name")
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def bank_add(name: str, photos: Sequence[Path]) -> None:
    """Hash PHOTOS (files or folders) into bank NAME, creating it if needed."""
    added, skipped = add_photos(get_settings(), name, list(expand(photos)))
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"bank {name}: {added} hashes added, {len(skipped)} photos skipped")


@bank.command("list")
def bank_list() -> None:
    """Every bank with its number of hashes."""
    engine = make_engine(get_settings().database_url)
    try:
        banks = list_banks(engine)
    finally:
        engine.dispose()
    for row in banks:
        click.echo(f"{row['name']}\t{row['hashes']} hashes\tcreated {row['created_at']:%Y-%m-%d}")


@bank.command("remove")
@click.argument("name")
@click.argument("photos", nargs=-1, type=click.Path(exists=True, path_type=Path))
def bank_remove(name: str, photos: Sequence[Path]) -> None:
    """Remove bank NAME entirely, or only the hashes of PHOTOS from it."""
    removed = remove_photos(get_settings(), name, list(expand(photos)) or None)
    click.echo(f"bank {name}: {removed} hashes removed" + ("" if photos else ", bank deleted"))
