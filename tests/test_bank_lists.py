"""Hash lists in and out of banks (`modq bank import|export`), provenance in verdict reasons,
switching banks and hashes off, removing by hash or content id, and dihedral matching through
the worker's batch path, on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from PIL import Image

from modq.cli.bank import hash_file
from modq.cli.main import main
from modq.detectors.hash_lists import format_hash_list, parse_hash_list
from modq.domain.events import ListingEvent
from modq.domain.verdicts import Verdict
from modq.pipeline import photos as pipeline_photos
from modq.pipeline.moderate import handle_messages
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from modq.store.stores import open_stores

H1, H2, H3 = "a" * 64, "0123456789abcdef" * 4, "f0" * 32


def test_parse_the_three_formats_and_report_bad_lines() -> None:
    hma = parse_hash_list(
        f"# HMA export\npdq {H1}\n\npdq {H2.upper()} seen on forum\nmd5 abc\npdq 12\n"
    )
    assert hma.format == "hma"
    assert [e.hash.hex() for e in hma.entries] == [H1, H2]
    assert hma.entries[1].note == "seen on forum"
    assert [e.split(":")[0] for e in hma.errors] == ["line 5", "line 6"]

    csv = parse_hash_list(
        f'Hash,Content ID,Note\n{H1},c-1,"pistol, black"\n{H2},c-2,\nnot-a-hash,c-3,x\n{H1},c-4,\n'
    )
    assert csv.format == "csv" and csv.duplicates == 1
    assert [(e.content_id, e.note) for e in csv.entries] == [
        ("c-1", "pistol, black"),
        ("c-2", None),
    ]
    assert csv.errors == ["line 4: not a PDQ hash (64 hex digits): 'not-a-hash'"]

    plain = parse_hash_list(f"{H1}\n{H2}  \n{H3}0\n")
    assert (
        plain.format == "hex" and len(plain.entries) == 2 and plain.errors[0].startswith("line 3")
    )
    assert parse_hash_list("content_id,note\nc,n\n").errors[0].startswith("line 1: the CSV header")


def test_export_formats_round_trip() -> None:
    parsed = parse_hash_list(
        f"hash,content_id,note,enabled\n{H1},c-1,a note,true\n{H2},c-2,,false\n"
    )
    csv = format_hash_list(parsed.entries, "csv")
    again = parse_hash_list(csv)
    assert again.entries == parsed.entries and not again.errors
    assert format_hash_list(parsed.entries, "hma") == f"pdq {H1}\n"  # enabled hashes only
    assert format_hash_list(parsed.entries, "hex") == f"{H1}\n"


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], datasets_dir: Path, tmp_path: Path
) -> Settings:
    return make_settings(
        image_roots=[str(datasets_dir), str(tmp_path)], detectors=["banks"], bank_refresh_s=0
    )


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    monkeypatch.setenv("MODQ_DATABASE_URL", settings.database_url)
    runner = CliRunner()
    yield lambda *args, **kw: runner.invoke(main, ["bank", *args], **kw)


def test_import_export_disable_remove(cli: Callable[..., Result], tmp_path: Path) -> None:
    bank = f"ncmec-{uuid.uuid4().hex[:6]}"
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\nmd5 d41d8cd98f00b204e9800998ecf8427e\n")
    refused = cli("import", bank, str(empty))
    assert refused.exit_code == 1
    assert "line 2" in refused.output and "not created" in refused.output
    assert bank not in cli("list").output

    listing = tmp_path / "list.csv"
    listing.write_text(f"hash,content_id,note\n{H1},c-1,first\nzz,c-9,\n{H2},c-2,\n{H3},c-3,\n")
    done = cli("import", bank, str(listing))
    assert done.exit_code == 0, done.output
    assert "line 3: not a PDQ hash" in done.output
    assert f"bank {bank}: 3 hashes added, 0 already there, 1 bad lines skipped" in done.output
    assert "already there" in cli("import", bank, str(listing)).output

    assert (
        cli("disable", bank, "--content-id", "c-2").output.strip()
        == f"bank {bank}: 1 hashes disabled"
    )
    assert f"{bank}\t3 hashes (1 disabled)" in cli("list").output
    assert cli("export", bank, "--format", "hma").output == f"pdq {H1}\npdq {H3}\n"
    exported = cli("export", bank).output
    assert f"{H2},c-2,,100,false" in exported and f"{H1},c-1,first,100,true" in exported
    assert cli("enable", bank, "--hash", H2).exit_code == 0
    assert cli("export", bank, "--format", "hex").output == f"{H1}\n{H2}\n{H3}\n"

    assert cli("disable", bank).output.strip() == f"bank {bank} disabled"
    assert "BANK DISABLED" in cli("list").output
    assert (
        cli("remove", bank, "--content-id", "c-1").output.strip()
        == f"bank {bank}: 1 hashes removed"
    )
    assert cli("remove", bank, "--hash", H3).exit_code == 0
    assert cli("remove", bank, "--hash", H3).exit_code == 1  # no longer there
    asked = cli("remove", bank, input="n\n")
    assert asked.exit_code == 1 and "Delete bank" in asked.output
    assert f"{bank}\t1 hashes" in cli("list").output
    assert "bank deleted" in cli("remove", bank, input="y\n").output
    assert bank not in cli("list").output


def _moderate(rt: Runtime, *events: ListingEvent) -> list[Verdict]:
    return handle_messages([e.to_message() for e in events], rt, "new").verdicts


def _event(images: list[Path], seller: str) -> ListingEvent:
    return ListingEvent(
        listing_id=f"l-{uuid.uuid4().hex[:10]}",
        declared_category="food.fruit",
        images=[str(p) for p in images],
        seller_id=seller,
    )


def test_rotated_upload_of_an_imported_hash_is_rejected_with_provenance(
    settings: Settings, cli: Callable[..., Result], datasets_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    photo = sorted((datasets_dir / "listings-v1" / "val" / "food.fruit").glob("*.jpg"))[3]
    big = Image.open(photo).convert("RGB").resize((2400, 1800))
    banned = tmp_path / "banned.jpg"
    big.save(banned, "JPEG", quality=90)
    bank = f"tx-{uuid.uuid4().hex[:6]}"
    hma = tmp_path / "hma.txt"
    hma.write_text(f"pdq {hash_file(banned, settings).hex}\n")
    assert cli("import", bank, str(hma)).exit_code == 0
    csv = tmp_path / "ids.csv"
    csv.write_text(f"hash,content_id,note\n{hash_file(banned, settings).hex},TE-42,counterfeit\n")
    assert cli("import", f"{bank}-ids", str(csv)).exit_code == 0

    rotated = tmp_path / "rotated.jpg"
    big.transpose(Image.Transpose.ROTATE_90).resize((900, 1200)).save(rotated, "JPEG", quality=70)
    # Whatever size the model decodes at, the worker's hash is the bytes' one.
    monkeypatch.setattr(pipeline_photos, "decode_side", lambda rt, category: 736)
    rt = Runtime.build(settings, stores=open_stores(settings.database_url))
    try:
        (hit,) = _moderate(rt, _event([rotated], "s1"))
        assert hit.decision == "reject"
        by_bank = {r.label: r.text() for r in hit.reasons if r.code == "banned_image"}
        plain, with_ids = by_bank[f"banks.{bank}"], by_bank[f"banks.{bank}-ids"]
        assert plain.startswith(f"banned_image: photo 0: banks.{bank} ")
        assert ": PDQ distance " in plain
        assert "matched the upload's rotate270 variant" in plain  # turned back by 270 degrees
        assert "content id TE-42; note 'counterfeit'" in with_ids
        engine = sa.create_engine(settings.database_url)
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT hash FROM photo_hashes WHERE listing_id = :l"),
                {"l": hit.listing_id},
            ).scalar_one()
        engine.dispose()
        assert bytes(stored) == hash_file(rotated, settings).bytes

        assert cli("disable", f"{bank}-ids", "--content-id", "TE-42").exit_code == 0
        assert cli("disable", bank).exit_code == 0
        (after,) = _moderate(rt, _event([rotated], "s2"))
        assert not any(r.code == "banned_image" for r in after.reasons)
    finally:
        rt.close()


def test_csv_fields_may_hold_newlines_and_bad_hash_options_are_refused(
    cli: Callable[..., Result],
) -> None:
    parsed = parse_hash_list(f'hash,note\n{H1},"two\nlines"\n# comment\nbad,\n')
    assert parsed.entries[0].note == "two\nlines"
    assert parsed.errors == ["line 5: not a PDQ hash (64 hex digits): 'bad'"]
    refused = cli("disable", "any", "--hash", "xyz")
    assert refused.exit_code == 2 and "not a PDQ hash" in refused.output


def test_bank_add_points_hashes_and_hash_lists_at_import(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    bank = f"add-{uuid.uuid4().hex[:6]}"
    as_argument = cli("add", bank, H1)
    assert as_argument.exit_code == 2 and "modq bank import" in as_argument.output
    listing = tmp_path / "hashes.txt"
    listing.write_text(f"{H1}\n")
    as_file = cli("add", bank, str(listing))
    assert as_file.exit_code == 1
    assert f"use `modq bank import {bank} {listing}`" in as_file.output
    assert bank not in cli("list").output  # no empty bank left behind
