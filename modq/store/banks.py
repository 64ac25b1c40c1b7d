"""Image banks and photo hashes in the database (tables in `modq.store.schema`).

Banks are named sets of PDQ hashes of photos the marketplace has banned, each hash with the
content id and note of the list it came from; `modq bank` edits them (banks and single hashes
can be disabled without being deleted), and workers load the enabled ones into memory (see
`modq.detectors.banks`) and reload them when the 'banks' counter moves (every edit here moves
it). `photo_hashes`, the hash of every moderated photo with its seller for the
duplicate-photo check, is read and written in `modq.store.hash_feed`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.errors import NotFoundError
from modq.store.database import dialect_insert as _insert
from modq.store.database import make_engine, unavailable
from modq.store.hash_feed import (
    BANKS,
    PHOTO_HASHES,
    advance,
    counter,
    photo_rows,
    save_photo_hashes,
)
from modq.store.interface import BankEntry, BankHash, PhotoHashRow, PhotoRows
from modq.store.schema import bank_hashes, image_banks


def _bank_id(conn: sa.Connection, bank: str) -> int:
    bank_id = conn.execute(
        sa.select(image_banks.c.id).where(image_banks.c.name == bank)
    ).scalar_one_or_none()
    if bank_id is None:
        raise NotFoundError(f"no bank named {bank!r}")
    return int(bank_id)


def _selected(
    bank_id: int, hashes: Sequence[bytes] | None, content_ids: Sequence[str] | None
) -> Any:
    """The rows of `bank_id` with one of `hashes` or one of `content_ids` (all when both None)."""
    where: Any = bank_hashes.c.bank_id == bank_id
    picks = []
    if hashes:
        picks.append(bank_hashes.c.hash.in_(list(hashes)))
    if content_ids:
        picks.append(bank_hashes.c.content_id.in_(list(content_ids)))
    if hashes is not None or content_ids is not None:
        where = sa.and_(where, sa.or_(sa.false(), *picks))
    return where


_ENGINES: dict[str, SqlBankStore] = {}


def _reopened(url: str) -> SqlBankStore:
    """One store (and engine) per URL in a process that received a pickled one."""
    if url not in _ENGINES:
        _ENGINES[url] = SqlBankStore(make_engine(url))
    return _ENGINES[url]


def add_to_bank(engine: Engine, bank: str, entries: Sequence[BankEntry]) -> int:
    """Add the hashes to `bank`, creating it; returns how many were new (a hash already in the
    bank keeps its row). Nothing to add creates nothing: no empty bank appears by accident."""
    if not entries:
        return 0
    with unavailable(f"adding to bank {bank}"), engine.begin() as conn:
        conn.execute(_insert(conn, image_banks).values(name=bank).on_conflict_do_nothing())
        bank_id = _bank_id(conn, bank)
        rows = [
            {
                "bank_id": bank_id,
                "hash": e.hash,
                "quality": e.quality,
                "source": e.source,
                "content_id": e.content_id,
                "note": e.note,
                "enabled": e.enabled,
            }
            for e in entries
        ]
        stmt = _insert(conn, bank_hashes).on_conflict_do_nothing().returning(bank_hashes.c.id)
        added = len(conn.execute(stmt, rows).all())
        if added:
            advance(conn, BANKS)
        return added


def list_banks(engine: Engine) -> list[dict[str, Any]]:
    """Every bank with its hash count (and how many are disabled), by name."""
    count = sa.func.count(bank_hashes.c.id)
    disabled = sa.func.count(bank_hashes.c.id).filter(bank_hashes.c.enabled == sa.false())
    query = (
        sa.select(
            image_banks.c.name,
            image_banks.c.created_at,
            image_banks.c.enabled,
            count.label("hashes"),
            disabled.label("disabled"),
        )
        .select_from(image_banks.outerjoin(bank_hashes))
        .group_by(image_banks.c.id)
        .order_by(image_banks.c.name)
    )
    with unavailable("listing banks"), engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def bank_entries(engine: Engine, bank: str) -> list[BankEntry]:
    """Every hash of `bank` with its provenance, in the order they were added."""
    cols = bank_hashes.c
    with unavailable(f"reading bank {bank}"), engine.connect() as conn:
        query = sa.select(
            cols.hash, cols.quality, cols.source, cols.content_id, cols.note, cols.enabled
        ).where(cols.bank_id == _bank_id(conn, bank))
        rows = conn.execute(query.order_by(cols.id)).all()
    return [BankEntry(bytes(r[0]), r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


def remove_from_bank(
    engine: Engine,
    bank: str,
    hashes: Sequence[bytes] | None = None,
    content_ids: Sequence[str] | None = None,
) -> int:
    """Delete the given hashes (by hash or content id) from `bank`, or the whole bank when both
    are None. Returns the number of hashes removed; NotFoundError when there is no such bank."""
    with unavailable(f"removing from bank {bank}"), engine.begin() as conn:
        bank_id = _bank_id(conn, bank)
        where = _selected(bank_id, hashes, content_ids)
        removed = conn.execute(sa.delete(bank_hashes).where(where)).rowcount
        if hashes is None and content_ids is None:
            conn.execute(sa.delete(image_banks).where(image_banks.c.id == bank_id))
        advance(conn, BANKS)
        return int(removed)


def set_enabled(
    engine: Engine,
    bank: str,
    enabled: bool,
    hashes: Sequence[bytes] | None = None,
    content_ids: Sequence[str] | None = None,
) -> int:
    """Switch the given hashes of `bank` on or off (returns how many matched), or the bank
    itself when both are None (returns 1)."""
    with unavailable(f"switching bank {bank}"), engine.begin() as conn:
        bank_id = _bank_id(conn, bank)
        # Workers reload the banks when this counter moves (modq.detectors.banks).
        advance(conn, BANKS)
        if hashes is None and content_ids is None:
            table = image_banks
            conn.execute(sa.update(table).where(table.c.id == bank_id).values(enabled=enabled))
            return 1
        where = _selected(bank_id, hashes, content_ids)
        return int(
            conn.execute(sa.update(bank_hashes).where(where).values(enabled=enabled)).rowcount
        )


def load_bank_hashes(engine: Engine, min_quality: int) -> tuple[int, list[BankHash]]:
    """The banks' version (the 'banks' counter) and every usable hash (enabled, of an enabled
    bank, quality >= `min_quality`) in id order. The version is read first: an edit that
    commits in between is loaded now and loaded again when the next poll sees its version."""
    cols = bank_hashes.c
    query = (
        sa.select(cols.hash, image_banks.c.name, cols.content_id, cols.note)
        .join(image_banks)
        .where(cols.quality >= min_quality, cols.enabled, image_banks.c.enabled)
        .order_by(cols.id)
    )
    version = counter(engine, BANKS)
    with unavailable("loading image banks"), engine.connect() as conn:
        rows = conn.execute(query).all()
    return version, [BankHash(bytes(r[0]), str(r[1]), r[2], r[3]) for r in rows]


class SqlBankStore:
    """`BankStore` on a SQLAlchemy engine: what the worker's `BankMatcher` is given. Sent to
    another process (the photo index's builder) it reopens an engine on the same URL there."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _reopened, (self.engine.url.render_as_string(hide_password=False),)

    def load_bank_hashes(self, min_quality: int) -> tuple[int, list[BankHash]]:
        return load_bank_hashes(self.engine, min_quality)

    def bank_version(self) -> int:
        return counter(self.engine, BANKS)

    def save_photo_hashes(self, rows: Sequence[PhotoHashRow]) -> list[int]:
        return save_photo_hashes(self.engine, rows)

    def photo_rows(
        self, after: int | None, since: datetime, min_quality: int, limit: int = 200_000
    ) -> Iterator[PhotoRows]:
        return photo_rows(self.engine, after, since, min_quality, limit)

    def photo_counter(self) -> int:
        return counter(self.engine, PHOTO_HASHES)

    def source_id(self) -> str:
        """Which database the rows come from: an index built from another is not reused."""
        url = self.engine.url
        return f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{url.database}"
