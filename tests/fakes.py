"""In-memory stores that satisfy the Protocols of `modq.store.interface`, for unit tests.

They live in tests/, not in modq/store: production has no use for a store that forgets on
exit (the embedded fallback is SQLite, a real SQL store), and modq/store is where SQL lives.
They keep only what the Protocols promise (and what tests/test_store_contract.py checks on
the fake and on the SQL store alike, so the two cannot drift apart):

- `save_batch` is idempotent: the same verdict (listing, version, model, policy) keeps its
  id; ids come back in input order; a redelivery inside one batch collapses, the last copy
  winning. Each listing's current verdict is its highest listing version, then newest row.
- bank hashes: the version moves with every edit; loads return enabled hashes of enabled
  banks with quality >= the minimum, in insertion order.
- photo hashes: one row per (listing, photo index), a newer listing version replaces an
  older one and gets a new seq, an older one changes nothing; `photo_rows` pages by seq
  above a watermark within the window, and its last page's watermark says how far it read.

What the SQL store does beyond the Protocols (intake rows, review jobs, the console's
queries) is not here: a test of those is an integration test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modq.domain.events import ListingEvent, as_utc
from modq.domain.verdicts import RejectedEvent, Verdict
from modq.store.interface import BankEntry, BankHash, PhotoHashRow, PhotoRows, Stores

VerdictKey = tuple[str, int, str, str]


def _key(verdict: Verdict) -> VerdictKey:
    return (
        verdict.listing_id,
        verdict.listing_version,
        verdict.model_version,
        verdict.policy_version,
    )


@dataclass
class MemoryVerdictStore:
    """`VerdictStore` in a dict. `verdicts` holds every row by id, `rejected` every rejected
    event in order, `events` the newest event of each listing."""

    verdicts: dict[int, Verdict] = field(default_factory=dict)
    rejected: list[RejectedEvent] = field(default_factory=list)
    events: dict[str, ListingEvent] = field(default_factory=dict)
    batches: int = 0  # calls of save_batch that stored something
    _ids: dict[VerdictKey, int] = field(default_factory=dict)
    _next: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def save_batch(
        self,
        events: Sequence[ListingEvent],
        verdicts: Sequence[Verdict],
        rejected: Sequence[RejectedEvent] = (),
    ) -> list[int]:
        if not (events or verdicts or rejected):
            return []
        self.batches += 1
        for event in events:
            known = self.events.get(event.listing_id)
            if known is None or known.listing_version <= event.listing_version:
                self.events[event.listing_id] = event
        for verdict in verdicts:  # the last copy of a redelivery wins, under the first id
            key = _key(verdict)
            if key not in self._ids:
                self._ids[key] = next(self._next)
            self.verdicts[self._ids[key]] = verdict
        self.rejected.extend(rejected)
        return [self._ids[_key(v)] for v in verdicts]

    def record_rejected(self, rejected: Sequence[RejectedEvent]) -> None:
        self.rejected.extend(rejected)

    def current(self, listing_id: str) -> Verdict | None:
        """The listing's current verdict: highest listing version, then the newest row."""
        rows = [(v.listing_version, i, v) for i, v in self.verdicts.items()]
        mine = [row for row in rows if row[2].listing_id == listing_id]
        return max(mine, key=lambda row: (row[0], row[1]))[2] if mine else None


@dataclass
class _Bank:
    enabled: bool = True
    entries: list[BankEntry] = field(default_factory=list)


@dataclass
class _PhotoRow:
    row: PhotoHashRow
    seq: int
    seen: datetime


@dataclass
class MemoryBankStore:
    """`BankStore` in dicts, plus the bank edits the CLI makes through the SQL module
    (`add_to_bank`, `set_enabled`)."""

    banks: dict[str, _Bank] = field(default_factory=dict)
    version: int = 0
    photos: dict[tuple[str, int], _PhotoRow] = field(default_factory=dict)
    counter: int = 0
    name: str = "memory://"
    # What `datetime.now` is to the store: a test moves it to age rows out of the window.
    clock: datetime | None = None

    # --- bank edits (modq.store.banks.add_to_bank / set_enabled in SQL) -------------------

    def add_to_bank(self, bank: str, entries: Sequence[BankEntry]) -> int:
        self.banks.setdefault(bank, _Bank()).entries.extend(entries)
        self.version += 1
        return len(entries)

    def set_enabled(self, bank: str, enabled: bool) -> None:
        self.banks[bank].enabled = enabled
        self.version += 1

    # --- the Protocol ---------------------------------------------------------------------

    def load_bank_hashes(self, min_quality: int) -> tuple[int, list[BankHash]]:
        hashes = [
            BankHash(e.hash, name, e.content_id, e.note)
            for name, bank in self.banks.items()
            if bank.enabled
            for e in bank.entries
            if e.enabled and e.quality >= min_quality
        ]
        return self.version, hashes

    def bank_version(self) -> int:
        return self.version

    def save_photo_hashes(self, rows: Sequence[PhotoHashRow]) -> list[int]:
        if not rows:
            return []
        newest: dict[tuple[str, int], int] = {}
        for n, r in enumerate(rows):
            key = (r.listing_id, r.photo_index)
            if key not in newest or rows[newest[key]].listing_version <= r.listing_version:
                newest[key] = n
        kept = sorted(newest.values())
        first = self.counter + 1
        self.counter += len(kept)
        seqs = dict(zip(kept, range(first, self.counter + 1), strict=True))
        now = self.clock or datetime.now(UTC)
        for n in kept:
            row = rows[n]
            key = (row.listing_id, row.photo_index)
            old = self.photos.get(key)
            if old is None or old.row.listing_version <= row.listing_version:
                self.photos[key] = _PhotoRow(row, seqs[n], now)
        return [seqs.get(n, 0) for n in range(len(rows))]

    def photo_rows(
        self, after: int | None, since: datetime, min_quality: int, limit: int = 200_000
    ) -> Iterator[PhotoRows]:
        top = self.counter
        since = as_utc(since)
        rows = sorted(
            (p for p in self.photos.values() if p.seen >= since and p.row.quality >= min_quality),
            key=lambda p: p.seq,
        )
        rows = [p for p in rows if p.seq <= top and (after is None or p.seq > after)]
        if after is not None:
            rows = rows[:limit]
        page = PhotoRows()
        for p in rows:
            page.hashes += p.row.hash
            page.listing_ids.append(p.row.listing_id)
            page.seller_ids.append(p.row.seller_id)
            page.photo_index.append(p.row.photo_index)
            page.seq.append(p.seq)
            page.seen.append(p.seen.timestamp())
        if rows:
            page.watermark = -1  # not the last page
            yield page
        full = after is None or len(rows) < limit
        yield PhotoRows(watermark=top if full else rows[-1].seq)

    def photo_counter(self) -> int:
        return self.counter

    def source_id(self) -> str:
        return self.name


def memory_stores() -> Stores:
    """`Stores` for `Runtime.build(settings, stores=memory_stores())`: nothing leaves the
    process; `stores.verdicts` and `stores.banks` are the fakes above."""
    return Stores(verdicts=MemoryVerdictStore(), banks=MemoryBankStore())
