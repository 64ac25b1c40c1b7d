"""What the per-host hash index reads from PostgreSQL: photo hashes above a watermark, and
the counters that say whether anything changed (tables in `modq.store.schema`).

Every writer of `photo_hashes` first moves the 'photo_hashes' row of `index_counters` by the
number of rows it writes and gives them the seqs it reserved; every bank edit moves the
'banks' row. The counter row stays locked until the writer commits, so writers commit in seq
order: once a reader has seen counter value C, every row with seq <= C is committed or never
will be, and "seq in (watermark, C]" loses nothing and reads nothing twice (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modq.domain.events import as_utc
from modq.store.database import dialect_insert as _insert
from modq.store.database import unavailable
from modq.store.interface import PhotoHashRow, PhotoRows
from modq.store.schema import index_counters, photo_hashes

PHOTO_HASHES = "photo_hashes"
PAGE = 100_000
BANKS = "banks"


def advance(conn: Connection, name: str, n: int = 1) -> int:
    """Move counter `name` by `n` inside the caller's transaction; returns the new value (the
    last of the `n` values reserved). Holds the counter's row lock until the commit."""
    table = index_counters
    stmt = (
        sa.update(table)
        .where(table.c.name == name)
        .values(value=table.c.value + n)
        .returning(table.c.value)
    )
    return int(conn.execute(stmt).scalar_one())


def counter(engine: Engine, name: str) -> int:
    with unavailable(f"reading counter {name}"), engine.connect() as conn:
        query = sa.select(index_counters.c.value).where(index_counters.c.name == name)
        return int(conn.execute(query).scalar_one())


_UPDATED = ("listing_version", "seller_id", "hash", "quality", "seen_at", "seq")
_UNNEST_COLUMNS = {
    "listing_id": "text",
    "photo_index": "integer",
    "listing_version": "integer",
    "seller_id": "text",
    "hash": "bytea",
    "quality": "integer",
    "seq": "bigint",
}
_UNNEST_UPSERT = sa.text(
    f"INSERT INTO photo_hashes ({', '.join(_UNNEST_COLUMNS)}, seen_at)"
    " SELECT *, :seen_at FROM unnest("
    + ", ".join(f"CAST(:{k} AS {t}[])" for k, t in _UNNEST_COLUMNS.items())
    + ") ON CONFLICT (listing_id, photo_index) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)
    + " WHERE photo_hashes.listing_version <= EXCLUDED.listing_version"
)


def save_photo_hashes(engine: Engine, rows: Sequence[PhotoHashRow]) -> list[int]:
    """Upsert one row per listing photo (a newer version of the listing replaces it); returns
    the seq each row was given, in order (0 for a row that a newer version of the same photo
    in `rows` replaced before it was written)."""
    if not rows:
        return []
    # One statement writes them all, and it may touch each key once: the newest version wins.
    newest: dict[tuple[str, int], int] = {}
    for n, r in enumerate(rows):
        key = (r.listing_id, r.photo_index)
        if key not in newest or rows[newest[key]].listing_version <= r.listing_version:
            newest[key] = n
    kept = sorted(newest.values())
    with unavailable("saving photo hashes"), engine.begin() as conn:
        last = advance(conn, PHOTO_HASHES, len(kept))
        seq = dict(zip(kept, range(last - len(kept) + 1, last + 1), strict=True))
        now = datetime.now(UTC)
        values = [{**rows[n].__dict__, "seen_at": now, "seq": seq[n]} for n in kept]
        if conn.dialect.name == "postgresql":
            # One statement over arrays: no round trip per row and no SQL compiled per batch.
            columns = {k: [v[k] for v in values] for k in _UNNEST_COLUMNS}
            conn.execute(_UNNEST_UPSERT, {**columns, "seen_at": now})
        else:
            stmt = _insert(conn, photo_hashes)
            stmt = stmt.on_conflict_do_update(
                index_elements=["listing_id", "photo_index"],
                set_={c: stmt.excluded[c] for c in _UPDATED},
                where=photo_hashes.c.listing_version <= stmt.excluded.listing_version,
            )
            conn.execute(stmt, values)
    return [seq.get(n, 0) for n in range(len(rows))]


def photo_rows(
    engine: Engine, after: int | None, since: datetime, min_quality: int, limit: int = 200_000
) -> Iterator[PhotoRows]:
    """Rows seen since `since` with quality >= `min_quality`, in pages of at most 100,000: all
    of them up to the current counter when `after` is None (a full load), else those with seq
    above `after`, at most `limit`. The last page's watermark says how far they reach."""
    cols = photo_hashes.c
    with unavailable("loading photo hashes"), engine.connect() as conn:
        top = int(
            conn.execute(
                sa.select(index_counters.c.value).where(index_counters.c.name == PHOTO_HASHES)
            ).scalar_one()
        )
        where = [cols.seen_at >= since, cols.quality >= min_quality, cols.seq <= top]
        query = sa.select(
            cols.hash, cols.listing_id, cols.seller_id, cols.photo_index, cols.seq, cols.seen_at
        )
        if after is not None:
            query = query.where(cols.seq > after, *where).order_by(cols.seq).limit(limit)
        else:
            query = query.where(*where)
        result = conn.execution_options(yield_per=PAGE).execute(query)
        count, last = 0, after or 0
        for rows in result.partitions():
            page = PhotoRows()
            for h, listing, seller, index, seq, seen in rows:
                page.hashes += h
                page.listing_ids.append(listing)
                page.seller_ids.append(seller)
                page.photo_index.append(index)
                page.seq.append(seq)
                page.seen.append(as_utc(seen).timestamp())
            count, last = count + len(page), page.seq[-1] if page.seq else last
            page.watermark = -1  # not the last page
            yield page
    full = after is None or count < limit
    yield PhotoRows(watermark=top if full else last)
