"""Image banks and photo hashes in the database (tables in `modq.store.schema`).

Banks are named sets of PDQ hashes of photos the marketplace has banned; `modq bank` edits
them, and workers load them into memory (see `modq.detectors.banks`). `photo_hashes` holds
the hash of every moderated photo with its seller, for the duplicate-photo check.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.errors import NotFoundError
from modq.store.database import dialect_insert as _insert
from modq.store.database import unavailable
from modq.store.interface import BankEntry, PhotoHashRow
from modq.store.schema import bank_hashes, image_banks, photo_hashes


def add_to_bank(engine: Engine, bank: str, entries: Sequence[BankEntry]) -> int:
    """Create `bank` if needed and add the hashes; returns how many were new."""
    with unavailable(f"adding to bank {bank}"), engine.begin() as conn:
        conn.execute(_insert(conn, image_banks).values(name=bank).on_conflict_do_nothing())
        bank_id = conn.execute(
            sa.select(image_banks.c.id).where(image_banks.c.name == bank)
        ).scalar_one()
        if not entries:
            return 0
        rows = [
            {"bank_id": bank_id, "hash": e.hash, "quality": e.quality, "source": e.source}
            for e in entries
        ]
        stmt = _insert(conn, bank_hashes).on_conflict_do_nothing().returning(bank_hashes.c.id)
        return len(conn.execute(stmt, rows).all())


def list_banks(engine: Engine) -> list[dict[str, Any]]:
    """Every bank with its hash count, by name."""
    count = sa.func.count(bank_hashes.c.id)
    query = (
        sa.select(image_banks.c.name, image_banks.c.created_at, count.label("hashes"))
        .select_from(image_banks.outerjoin(bank_hashes))
        .group_by(image_banks.c.id)
        .order_by(image_banks.c.name)
    )
    with unavailable("listing banks"), engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def remove_from_bank(engine: Engine, bank: str, hashes: Sequence[bytes] | None = None) -> int:
    """Delete the given hashes from `bank`, or the whole bank when `hashes` is None.

    Returns the number of hashes removed; raises NotFoundError when the bank does not exist.
    """
    with unavailable(f"removing from bank {bank}"), engine.begin() as conn:
        bank_id = conn.execute(
            sa.select(image_banks.c.id).where(image_banks.c.name == bank)
        ).scalar_one_or_none()
        if bank_id is None:
            raise NotFoundError(f"no bank named {bank!r}")
        where = bank_hashes.c.bank_id == bank_id
        if hashes is not None:
            where = sa.and_(where, bank_hashes.c.hash.in_(list(hashes)))
        removed = conn.execute(sa.delete(bank_hashes).where(where)).rowcount
        if hashes is None:
            conn.execute(sa.delete(image_banks).where(image_banks.c.id == bank_id))
        return int(removed)


def load_bank_hashes(engine: Engine, min_quality: int) -> tuple[list[bytes], list[str]]:
    """Every usable bank hash and the name of its bank, in id order."""
    query = (
        sa.select(bank_hashes.c.hash, image_banks.c.name)
        .join(image_banks)
        .where(bank_hashes.c.quality >= min_quality)
        .order_by(bank_hashes.c.id)
    )
    with unavailable("loading image banks"), engine.connect() as conn:
        rows = conn.execute(query).all()
    return [bytes(r[0]) for r in rows], [str(r[1]) for r in rows]


def save_photo_hashes(engine: Engine, rows: Sequence[PhotoHashRow]) -> None:
    """Upsert one row per listing photo; a newer version of the listing replaces it."""
    if not rows:
        return
    with unavailable("saving photo hashes"), engine.begin() as conn:
        stmt = _insert(conn, photo_hashes)
        stmt = stmt.on_conflict_do_update(
            index_elements=["listing_id", "photo_index"],
            set_={
                c: stmt.excluded[c]
                for c in ("listing_version", "seller_id", "hash", "quality", "seen_at")
            },
            where=photo_hashes.c.listing_version <= stmt.excluded.listing_version,
        )
        now = datetime.now(UTC)
        conn.execute(stmt, [{**r.__dict__, "seen_at": now} for r in rows])


def load_recent_photo_hashes(
    engine: Engine, since: datetime, min_quality: int
) -> list[tuple[bytes, str | None, str]]:
    """(hash, seller_id, listing_id) of photos seen since `since`."""
    query = (
        sa.select(photo_hashes.c.hash, photo_hashes.c.seller_id, photo_hashes.c.listing_id)
        .where(photo_hashes.c.seen_at >= since, photo_hashes.c.quality >= min_quality)
        .order_by(photo_hashes.c.seen_at)
    )
    with unavailable("loading recent photo hashes"), engine.connect() as conn:
        return [(bytes(h), s, str(lid)) for h, s, lid in conn.execute(query)]


class SqlBankStore:
    """`BankStore` on a SQLAlchemy engine: what the worker's `BankMatcher` is given."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load_bank_hashes(self, min_quality: int) -> tuple[list[bytes], list[str]]:
        return load_bank_hashes(self.engine, min_quality)

    def load_recent_photo_hashes(
        self, since: datetime, min_quality: int
    ) -> list[tuple[bytes, str | None, str]]:
        return load_recent_photo_hashes(self.engine, since, min_quality)

    def save_photo_hashes(self, rows: Sequence[PhotoHashRow]) -> None:
        save_photo_hashes(self.engine, rows)
