"""The recent-photo index of the duplicate-photo check: PDQ hashes of the last
`duplicate_window_days`, one copy per host (`modq.detectors.shared_index`).

Per row the segment files keep, packed: the 32-byte hash, 64-bit fingerprints of the listing
id and the seller id (blake2b; 0 for "no seller"), the photo's index in its listing, its seq
and when it was seen (epoch seconds). That is all the check needs: "another listing, of
another known seller". Segments larger than `Tiers.scan_max` also keep the multi-index
tables of `modq.detectors.mih`; smaller ones are scanned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from modq.detectors.hashing import HASH_BYTES
from modq.detectors.intrinsics import U8
from modq.detectors.mih import LAYOUTS, HashIndex, _brute_force
from modq.detectors.segments import Columns
from modq.detectors.shared_index import View
from modq.store.interface import BankStore, PhotoRows

I64 = npt.NDArray[np.int64]
WIDE_MIN_ROWS = 2_000_000
ROW_COLUMNS = ("hash", "listing", "seller", "photo_index", "seq", "seen")


def fingerprint(text: str | None) -> int:
    """64 bits of blake2b of `text` (0 for None); equal ids give equal fingerprints in every
    process and on every host."""
    if text is None:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") or 1


def fingerprints(texts: list[str] | list[str | None]) -> npt.NDArray[np.uint64]:
    return np.fromiter((fingerprint(t) for t in texts), np.uint64, len(texts))


def pack(rows: PhotoRows) -> Columns:
    """The store's rows as the segment's packed columns."""
    return {
        "hash": np.frombuffer(bytes(rows.hashes), np.uint8).reshape(-1, HASH_BYTES),
        "listing": fingerprints(rows.listing_ids),
        "seller": fingerprints(rows.seller_ids),
        "photo_index": np.asarray(rows.photo_index, np.uint16),
        "seq": np.asarray(rows.seq, np.int64),
        "seen": np.asarray(rows.seen, np.float64).astype(np.uint32),
    }


def concatenate(pages: list[Columns]) -> Columns:
    """One column set from pages of columns, a column at a time (peak: one column twice)."""
    out: Columns = {}
    for key in ROW_COLUMNS:
        out[key] = np.concatenate([p[key] for p in pages])
        for p in pages:
            del p[key]
    return out


def bytes_per_row(view: View) -> float:
    """Bytes of the index files (rows and structure) per row."""
    total = sum(a.nbytes for s in view.segments for a in (*s.rows.values(), *s.structure.values()))
    return total / max(1, len(view))


class PdqKind:
    """PDQ hashes searched within a Hamming distance (the `IndexKind` of this module), in one
    of the layouts of `modq.detectors.mih` (a change of layout rebuilds)."""

    key: tuple[str, ...] = ("listing", "photo_index")

    def __init__(self, layout: str = "fast", wide_min_rows: int = WIDE_MIN_ROWS) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown photo index layout {layout!r}; one of {LAYOUTS}")
        self.layout = layout
        self.wide_min_rows = wide_min_rows
        self.name = "pdq" if layout == "fast" else f"pdq-{layout}"

    def build(self, rows: Columns) -> Columns:
        hashes = np.asarray(rows["hash"])
        layout = self.layout
        if layout == "wide" and len(hashes) < self.wide_min_rows:
            # Below ~2M rows the 16-bit tables probe less than they scan: compact is faster
            # there (bench/bench_mih.py), and searching mixes layouts freely per segment.
            layout = "compact"
        return HashIndex(hashes, layout=layout).arrays()

    def open(self, rows: Columns, structure: Columns) -> Any:
        return HashIndex.from_arrays(rows["hash"], structure) if structure else None


def search(
    view: View, queries: U8, max_distance: int, radius: int | None = None
) -> Iterator[tuple[Columns, I64, I64, I64]]:
    """Per segment: (its rows, query row, segment row, distance) of every pair within reach
    (all of them when `radius` is None; see `HashIndex.search` for fewer probes)."""
    for seg in view.segments:
        if seg.searcher is not None:
            qs, js, ds = seg.searcher.search(queries, max_distance, radius)
        else:
            qs, js, ds = _brute_force(queries, np.asarray(seg.rows["hash"]), max_distance, 0)
        if len(qs):
            yield seg.rows, qs, js, ds


class PhotoFeed:
    """The `RowFeed` of the recent-photo index: `photo_hashes` through the bank store."""

    def __init__(self, store: BankStore, window_days: float, min_quality: int) -> None:
        self.store = store
        self.window_days = window_days
        self.min_quality = min_quality

    def source_id(self) -> str:
        return self.store.source_id()

    def counter(self) -> int:
        return self.store.photo_counter()

    def rows(self, after: int | None) -> tuple[Columns, int]:
        since = datetime.now(UTC) - timedelta(days=self.window_days)
        pages, watermark = [], after or 0
        for page in self.store.photo_rows(after, since, self.min_quality):
            pages.append(pack(page))  # packed page by page: the Python rows are short-lived
            watermark = page.watermark
        return concatenate(pages), watermark
