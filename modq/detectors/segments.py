"""Index segments: immutable folders of `.npy` files, and what a kind of index provides.

A segment holds rows (a `seq` column, a `seen` column in epoch seconds, whatever the kind
keeps per row) and, when large, the kind's search structure, each column one `.npy` file
(`rows.<name>.npy`, `index.<name>.npy`) that every process maps read-only. The functions
here write, merge and append segments; they read and write only files (and the feed), so the
host's builder process runs them (`modq.detectors.shared_index`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Columns = dict[str, npt.NDArray[Any]]


@dataclass
class Segment:
    name: str
    rows: Columns
    structure: Columns
    searcher: Any = None  # the kind's object over rows + structure (IndexKind.open)

    def __len__(self) -> int:
        return len(self.rows["seq"])


class IndexKind(Protocol):
    """What one kind of index plugs into the mechanism."""

    name: str
    # Rows with equal values in these columns are versions of one thing: merges keep the
    # highest seq.
    key: tuple[str, ...]

    def build(self, rows: Columns) -> Columns:
        """The search structure over `rows` (kept in the segment's files)."""
        ...

    def open(self, rows: Columns, structure: Columns) -> Any:
        """A searcher over a segment; `structure` is empty for segments scanned directly."""
        ...


class RowFeed(Protocol):
    """Where rows come from (the database), by an increasing `seq`."""

    def source_id(self) -> str: ...

    def counter(self) -> int:
        """The highest seq handed out so far."""
        ...

    def rows(self, after: int | None) -> tuple[Columns, int]:
        """Rows of the window above seq `after` (all of them when None) and the watermark
        they reach."""
        ...


def load_columns(folder: Path, prefix: str) -> Columns:
    return {
        p.name[len(prefix) : -4]: np.load(p, mmap_mode="r")
        for p in sorted(folder.glob(f"{prefix}*.npy"))
    }


def write_segment(root: Path, rows: Columns, kind: IndexKind, scan_max: int, now: float) -> str:
    """Write `rows` (and, above `scan_max` rows, the kind's structure) as a new segment
    folder under `root`; returns its name. The folder appears complete or not at all."""
    structure = kind.build(rows) if len(rows["seq"]) > scan_max else {}
    name = f"seg-{int(now * 1000):013d}-{uuid.uuid4().hex[:8]}"
    tmp = root / f"tmp-{name}"
    tmp.mkdir()
    for prefix, columns in (("rows.", rows), ("index.", structure)):
        for key, arr in columns.items():
            np.save(tmp / f"{prefix}{key}.npy", np.ascontiguousarray(arr))
    tmp.rename(root / name)
    return name


def merge_segments(
    root: Path, names: Sequence[str], kind: IndexKind, cutoff: float, scan_max: int, now: float
) -> str:
    """One new segment with the rows of the named segments seen at or after `cutoff`, one per
    key (the highest seq); returns its name. Reads the files, so it can run in any process."""
    parts = [load_columns(root / name, "rows.") for name in names]
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    live = rows["seen"] >= cutoff
    rows = {k: v[live] for k, v in rows.items()}
    if kind.key and len(rows["seq"]):
        # Sorted by key, then seq: the last row of each key is its newest version.
        order = np.lexsort((rows["seq"], *(rows[k] for k in reversed(kind.key))))
        keys = [rows[k][order] for k in kind.key]
        last = np.ones(len(order), bool)
        last[:-1] = np.logical_or.reduce([k[1:] != k[:-1] for k in keys])
        order = np.sort(order[last])  # back to seq order
        rows = {k: v[order] for k, v in rows.items()}
    return write_segment(root, rows, kind, scan_max, now)


def append_rows(
    feed: RowFeed, after: int, root: Path, kind: IndexKind, scan_max: int, now: float
) -> tuple[str | None, int, int]:
    """The feed's rows above `after` as a new segment: (its name or None when there are no
    rows, how many, the watermark they reach)."""
    rows, watermark = feed.rows(after)
    n = len(rows["seq"])
    return (write_segment(root, rows, kind, scan_max, now) if n else None), n, watermark
