"""One set of assertions about the store Protocols (modq/store/interface.py), run on the
in-memory fakes of tests/fakes.py and on the SQL stores, so the fakes unit tests lean on
cannot drift from what the worker really gets.

Backends: `memory` and `sqlite` (a migrated SQLite file: in-process) are unit tests;
`postgresql` (a database of its own per test, copied from a migrated template) is an
integration test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from modq.domain.events import ListingEvent
from modq.domain.verdicts import RejectedEvent, Verdict
from modq.store.banks import SqlBankStore, add_to_bank, set_enabled
from modq.store.database import make_engine, migrate
from modq.store.interface import BankEntry, BankStore, PhotoHashRow, PhotoRows, VerdictStore
from modq.store.queries import list_rejected, query_verdicts
from modq.store.verdicts import SqlVerdictStore
from tests.conftest import PG_ADMIN_URL, create_database, drop_database
from tests.fakes import MemoryBankStore, MemoryVerdictStore


@dataclass
class World:
    """The two stores of one backend, and what the Protocols leave to other code: bank edits
    and reading a listing's current verdict back."""

    verdicts: VerdictStore
    banks: BankStore
    add_to_bank: Callable[[str, list[BankEntry]], Any]
    disable_bank: Callable[[str], Any]
    current: Callable[[str], tuple[int, str, str] | None]  # (version, model, decision)
    rejected: Callable[[], list[str]]  # reasons, oldest first


def memory_world() -> World:
    verdicts, banks = MemoryVerdictStore(), MemoryBankStore()

    def current(listing: str) -> tuple[int, str, str] | None:
        v = verdicts.current(listing)
        return (v.listing_version, v.model_version, v.decision) if v else None

    return World(
        verdicts,
        banks,
        banks.add_to_bank,
        lambda bank: banks.set_enabled(bank, False),
        current,
        lambda: [r.reason for r in verdicts.rejected],
    )


def sql_world(url: str) -> tuple[World, Callable[[], None]]:
    engine = make_engine(url)

    def current(listing: str) -> tuple[int, str, str] | None:
        rows = query_verdicts(engine, listing=listing)
        if not rows:
            return None
        row = rows[0]
        return (row["listing_version"], row["model_version"], row["decision"])

    world = World(
        SqlVerdictStore(engine),
        SqlBankStore(engine),
        lambda bank, entries: add_to_bank(engine, bank, entries),
        lambda bank: set_enabled(engine, bank, False),
        current,
        lambda: [r["reason"] for r in reversed(list_rejected(engine))],
    )
    return world, engine.dispose


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("contract") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def pg_template() -> Iterator[str]:
    url = create_database("modq_test_contract_tpl")
    migrate(url)
    sa.create_engine(url).dispose()
    yield url
    drop_database(url)


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("postgresql", marks=pytest.mark.integration),
    ]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "memory":
        yield memory_world()
        return
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        world, close = sql_world(f"sqlite:///{path}")
        yield world
        close()
        return
    template = make_url(request.getfixturevalue("pg_template")).database
    url = make_url(PG_ADMIN_URL).set(database=f"modq_test_contract_{uuid.uuid4().hex[:10]}")
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # a copy of the migrated template: no migration per test
        conn.execute(sa.text(f'CREATE DATABASE "{url.database}" TEMPLATE "{template}"'))
    admin.dispose()
    rendered = url.render_as_string(hide_password=False)
    world, close = sql_world(rendered)
    yield world
    close()
    drop_database(rendered)


def event(listing: str = "L1", version: int = 1) -> ListingEvent:
    return ListingEvent(
        listing_id=listing,
        listing_version=version,
        declared_category="fashion.shoes",
        images=["s3://photos/a.jpg"],
        seller_id="seller-7",
    )


def verdict(listing: str = "L1", version: int = 1, **kw: Any) -> Verdict:
    values: dict[str, Any] = {
        "listing_id": listing,
        "listing_version": version,
        "declared_category": "fashion.shoes",
        "decision": "approve",
        "reasons": [],
        "suggested": [("fashion.shoes", 0.91)],
        "best_photo": 0,
        "scores": {"fashion.shoes": 0.91},
        "photos": [],
        "model_version": "m1",
        "policy_version": "p1",
    }
    values.update(kw)
    return Verdict(**values)


# --- VerdictStore ------------------------------------------------------------------------------


def test_ids_come_back_in_input_order_and_a_redelivery_keeps_them(world: World) -> None:
    batch = [verdict("B"), verdict("A"), verdict("C")]
    ids = world.verdicts.save_batch([event("B"), event("A"), event("C")], batch)
    assert len(set(ids)) == 3
    assert world.verdicts.save_batch([], list(reversed(batch))) == list(reversed(ids))
    assert world.verdicts.save_batch([], [], []) == []


def test_a_redelivery_inside_one_batch_is_one_row_and_the_last_copy_wins(world: World) -> None:
    first, again = verdict(decision="approve"), verdict(decision="review")
    a, b = world.verdicts.save_batch([event()], [first, again])
    assert a == b
    assert world.current("L1") == (1, "m1", "review")


def test_the_current_verdict_is_the_highest_version_then_the_newest_row(world: World) -> None:
    world.verdicts.save_batch([event(version=2)], [verdict(version=2, decision="reject")])
    world.verdicts.save_batch([event(version=1)], [verdict(version=1)])  # late, older
    assert world.current("L1") == (2, "m1", "reject")
    remodelled = verdict(version=2, model_version="m2", decision="approve")
    world.verdicts.save_batch([], [remodelled])  # no event: the listing is already known
    assert world.current("L1") == (2, "m2", "approve")
    assert world.current("nobody") is None


def test_rejected_events_are_kept_in_order(world: World) -> None:
    one = RejectedEvent(stage="worker", reason="bad json", payload="{", listing_id=None)
    two = RejectedEvent(stage="worker", reason="unknown category", payload="{}", listing_id="X")
    world.verdicts.record_rejected([one])
    world.verdicts.save_batch([], [], [two])
    world.verdicts.record_rejected([])
    assert world.rejected() == ["bad json", "unknown category"]


# --- BankStore: image banks --------------------------------------------------------------------


def h(n: int) -> bytes:
    return bytes([n]) * 32


def test_bank_hashes_load_by_quality_and_enabled_and_every_edit_moves_the_version(
    world: World,
) -> None:
    v0 = world.banks.bank_version()
    world.add_to_bank(
        "CSAI",
        [
            BankEntry(h(1), 90, content_id="c1", note="first"),
            BankEntry(h(2), 40),  # below the minimum quality
            BankEntry(h(3), 95, enabled=False),
        ],
    )
    world.add_to_bank("TVEC", [BankEntry(h(4), 80)])
    v1 = world.banks.bank_version()
    assert v1 > v0
    version, hashes = world.banks.load_bank_hashes(min_quality=50)
    assert version == v1
    assert sorted((x.bank, x.hash, x.content_id, x.note) for x in hashes) == [
        ("CSAI", h(1), "c1", "first"),
        ("TVEC", h(4), None, None),
    ]
    world.disable_bank("TVEC")
    version, hashes = world.banks.load_bank_hashes(min_quality=0)
    assert version > v1
    assert sorted(x.hash for x in hashes) == [h(1), h(2)]


# --- BankStore: photo hashes ------------------------------------------------------------------


def row(listing: str, index: int = 0, version: int = 1, q: int = 80, n: int = 0) -> PhotoHashRow:
    return PhotoHashRow(listing, index, version, f"seller-{listing}", h(n), q)


def read_all(
    store: BankStore, after: int | None, since: datetime, min_quality: int = 0, limit: int = 1000
) -> tuple[list[tuple[str, int, int]], int]:
    """(listing, photo index, seq) of every row the pages hold, and the final watermark."""
    pages: list[PhotoRows] = list(store.photo_rows(after, since, min_quality, limit))
    assert pages and all(p.watermark == -1 for p in pages[:-1]) and len(pages[-1]) == 0
    found = [
        (lid, idx, seq)
        for p in pages
        for lid, idx, seq in zip(p.listing_ids, p.photo_index, p.seq, strict=True)
    ]
    return found, pages[-1].watermark


def test_photo_hashes_get_rising_seqs_and_a_newer_version_replaces_an_older(world: World) -> None:
    store = world.banks
    start = store.photo_counter()
    seqs = store.save_photo_hashes([row("A"), row("A", 1), row("B", n=5)])
    assert seqs == [start + 1, start + 2, start + 3] and store.photo_counter() == start + 3
    # In one call, two versions of one photo: the newer is written, the older gets seq 0.
    seqs = store.save_photo_hashes([row("A", version=3, n=7), row("A", version=2, n=6)])
    assert seqs == [start + 4, 0]
    store.save_photo_hashes([row("A", version=1, n=9)])  # an older version changes nothing
    assert store.save_photo_hashes([]) == []

    found, watermark = read_all(store, None, datetime.now(UTC) - timedelta(days=1))
    assert watermark == store.photo_counter()
    assert sorted(found) == [("A", 0, start + 4), ("A", 1, start + 2), ("B", 0, start + 3)]
    pages = list(store.photo_rows(None, datetime.now(UTC) - timedelta(days=1), 0))
    by_key = {
        (lid, idx): p.hashes[32 * k : 32 * (k + 1)]
        for p in pages
        for k, (lid, idx) in enumerate(zip(p.listing_ids, p.photo_index, strict=True))
    }
    assert by_key[("A", 0)] == h(7) and by_key[("B", 0)] == h(5)


def test_photo_rows_read_above_a_watermark_within_the_window_and_quality(world: World) -> None:
    store = world.banks
    store.save_photo_hashes([row("A"), row("B", q=10)])
    found, mark = read_all(store, None, datetime.now(UTC) - timedelta(days=1), min_quality=50)
    assert [f[0] for f in found] == ["A"]
    store.save_photo_hashes([row("C"), row("D"), row("E")])
    found, mark2 = read_all(store, mark, datetime.now(UTC) - timedelta(days=1))
    assert [f[0] for f in found] == ["C", "D", "E"] and mark2 == store.photo_counter()
    # With a limit, the watermark stops at the last row read, and the next read goes on.
    found, partial = read_all(store, mark, datetime.now(UTC) - timedelta(days=1), limit=2)
    assert [f[0] for f in found] == ["C", "D"] and partial == found[-1][2]
    found, _ = read_all(store, partial, datetime.now(UTC) - timedelta(days=1), limit=2)
    assert [f[0] for f in found] == ["E"]
    # Nothing was seen after tomorrow.
    found, _ = read_all(store, None, datetime.now(UTC) + timedelta(days=1))
    assert found == []
    assert isinstance(store.source_id(), str) and store.source_id() == store.source_id()
