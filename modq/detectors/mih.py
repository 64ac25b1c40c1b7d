"""Exact Hamming range search over 256-bit PDQ hashes, fast enough for million-hash banks.

Multi-index hashing (Norouzi et al.): the 256 bits are cut into 16 chunks of 16 bits. Two
hashes within distance 31 differ by at most 1 bit in at least one chunk (pigeonhole: 16
chunks x 2 bits = 32 > 31), so probing, per chunk, the query's own 16-bit value and its
16 one-bit neighbours finds every match. Each chunk's table is a CSR bucket array sorted by
chunk value; next to each entry sit two other 64-bit words of the hash, so most candidates
are rejected while scanning a bucket sequentially, without a random memory access.

`radius=0` probes only the query's own value in each table: exact up to distance 15 (16
chunks x 1 bit), and it still finds almost every pair up to 31 (a miss needs all 16 chunks to
differ), at 1/17 of the probes. The dihedral variants of a photo (rotations, mirrors) are
searched that way (`modq.detectors.banks`); the photo as uploaded always gets the exact search.

Popcounts are the CPU's instruction (an LLVM intrinsic) and each query's 17 x 16 bucket starts are
prefetched before the buckets are scanned, so the random memory accesses overlap.

Memory is about 360 bytes per hash (~360 MB per million); the compact layout (`compact=True`)
drops the inline words, ~100 bytes per hash, and reads each candidate's hash from the hash
rows instead (slower: a random access per candidate, prefetched a bucket at a time). Hashes
added after the build go to a small delta scanned by brute force until the next rebuild.
Past ~2M hashes the wide layout (`modq.detectors.mih_wide`: 11 tables, longer keys) reads far
fewer candidates than either, in less memory than compact.
Distances above 31 lose the pigeonhole guarantee and are served by brute force over everything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from modq.detectors.hashing import HASH_BYTES
from modq.detectors.intrinsics import I64, U8, _popcount, _prefetch

CHUNKS = 16
MAX_INDEXED_DISTANCE = 31
_DELTA_REBUILD = 50_000

Matches = tuple[I64, I64, I64]


@njit(cache=True, inline="always")
def _distance_once(
    q_u64: npt.NDArray[np.uint64],
    q_u8: U8,
    db_u64: npt.NDArray[np.uint64],
    db_u8: U8,
    i: int,
    j: int,
    c: int,
    radius: int,
    max_distance: int,
) -> int:
    """The distance of query i to row j, found through chunk c; -1 when it is over
    `max_distance`, or when an earlier chunk also finds the pair (each pair reported once)."""
    d = np.uint64(0)
    for x in range(4):
        d += _popcount(q_u64[i, x] ^ db_u64[j, x])
    if d > max_distance:
        return -1
    for c2 in range(c):
        x1 = np.uint64(q_u8[i, 2 * c2] ^ db_u8[j, 2 * c2])
        x2 = np.uint64(q_u8[i, 2 * c2 + 1] ^ db_u8[j, 2 * c2 + 1])
        if _popcount(x1) + _popcount(x2) <= radius:
            return -1
    return int(d)


@njit(cache=True)
def _confirm(
    i: int,
    c: int,
    lo: int,
    hi: int,
    q_u64: npt.NDArray[np.uint64],
    q_u8: U8,
    ids: npt.NDArray[np.int32],
    inline: npt.NDArray[np.uint64],
    db_u64: npt.NDArray[np.uint64],
    db_u8: U8,
    max_distance: int,
    radius: int,
    out_q: I64,
    out_id: I64,
    out_d: I64,
    n_out: int,
) -> int:
    """Record the pairs of bucket [lo, hi) of chunk `c` within `max_distance`, each pair once
    (the rare path: a bucket where some entry passed the inline filter)."""
    w = c // 4
    qa = q_u64[i, (w + 1) % 4]
    qb = q_u64[i, (w + 2) % 4]
    for p in range(lo, hi):
        if _popcount(qa ^ inline[2 * p]) + _popcount(qb ^ inline[2 * p + 1]) > max_distance:
            continue
        j = ids[p]
        d = _distance_once(q_u64, q_u8, db_u64, db_u8, i, j, c, radius, max_distance)
        if d < 0:
            continue
        if n_out < out_q.shape[0]:
            out_q[n_out] = i
            out_id[n_out] = j
            out_d[n_out] = d
        n_out += 1
    return n_out


@njit(cache=True)
def _search(
    q_u64: npt.NDArray[np.uint64],
    q_u8: U8,
    offsets: I64,
    ids: npt.NDArray[np.int32],
    inline: npt.NDArray[np.uint64],
    db_u64: npt.NDArray[np.uint64],
    db_u8: U8,
    max_distance: int,
    radius: int,
    out_q: I64,
    out_id: I64,
    out_d: I64,
) -> int:
    n_out = 0
    probes = 1 + 16 * radius
    starts = np.empty(16 * probes, np.int64)
    ends = np.empty(16 * probes, np.int64)
    for i in range(q_u64.shape[0]):
        k = 0
        for c in range(16):
            base = (np.int64(q_u8[i, 2 * c]) << 8) | np.int64(q_u8[i, 2 * c + 1])
            for f in range(probes):
                key = base if f == 0 else base ^ (1 << (f - 1))
                starts[k] = offsets[c, key]
                ends[k] = offsets[c, key + 1]
                k += 1
        # All of this query's bucket starts are requested at once: the misses overlap.
        for k in range(16 * probes):
            _prefetch(inline, 2 * starts[k])
        for k in range(16 * probes):
            c = k // probes
            w = c // 4
            qa = q_u64[i, (w + 1) % 4]
            qb = q_u64[i, (w + 2) % 4]
            # The hot loop only asks whether any entry of the bucket passes the filter.
            hit = False
            for p in range(starts[k], ends[k]):
                near = _popcount(qa ^ inline[2 * p]) + _popcount(qb ^ inline[2 * p + 1])
                hit |= near <= max_distance
            if hit:
                n_out = _confirm(
                    i, c, starts[k], ends[k], q_u64, q_u8, ids, inline, db_u64, db_u8,
                    max_distance, radius, out_q, out_id, out_d, n_out,
                )  # fmt: skip
    return n_out


@njit(cache=True)
def _search_compact(
    q_u64: npt.NDArray[np.uint64],
    q_u8: U8,
    offsets: I64,
    ids: npt.NDArray[np.int32],
    db_u64: npt.NDArray[np.uint64],
    db_u8: U8,
    max_distance: int,
    radius: int,
    out_q: I64,
    out_id: I64,
    out_d: I64,
) -> int:
    """`_search` for the compact layout (no inline words): each candidate's hash is read from
    the hash rows; a bucket's rows are all prefetched before any is compared."""
    n_out = 0
    probes = 1 + 16 * radius
    starts = np.empty(16 * probes, np.int64)
    ends = np.empty(16 * probes, np.int64)
    for i in range(q_u64.shape[0]):
        k = 0
        for c in range(16):
            base = (np.int64(q_u8[i, 2 * c]) << 8) | np.int64(q_u8[i, 2 * c + 1])
            for f in range(probes):
                key = base if f == 0 else base ^ (1 << (f - 1))
                starts[k] = offsets[c, key]
                ends[k] = offsets[c, key + 1]
                k += 1
        for k in range(16 * probes):
            _prefetch(ids, starts[k])
        for k in range(16 * probes):
            for p in range(starts[k], ends[k]):
                _prefetch(db_u8, 32 * np.int64(ids[p]))
            c = k // probes
            for p in range(starts[k], ends[k]):
                j = ids[p]
                d = _distance_once(q_u64, q_u8, db_u64, db_u8, i, j, c, radius, max_distance)
                if d < 0:
                    continue
                if n_out < out_q.shape[0]:
                    out_q[n_out] = i
                    out_id[n_out] = j
                    out_d[n_out] = d
                n_out += 1
    return n_out


@njit(cache=True)
def _scan(
    q_u64: npt.NDArray[np.uint64],
    db_u64: npt.NDArray[np.uint64],
    max_distance: int,
    out_q: I64,
    out_id: I64,
    out_d: I64,
) -> int:
    """Every (query, row) pair within `max_distance`, comparing each query with every row."""
    n_out = 0
    for i in range(q_u64.shape[0]):
        q0, q1, q2, q3 = q_u64[i, 0], q_u64[i, 1], q_u64[i, 2], q_u64[i, 3]
        for j in range(db_u64.shape[0]):
            d = _popcount(q0 ^ db_u64[j, 0]) + _popcount(q1 ^ db_u64[j, 1])
            d += _popcount(q2 ^ db_u64[j, 2]) + _popcount(q3 ^ db_u64[j, 3])
            if d <= max_distance:
                if n_out < out_q.shape[0]:
                    out_q[n_out] = i
                    out_id[n_out] = j
                    out_d[n_out] = d
                n_out += 1
    return n_out


def _brute_force(queries: U8, hashes: U8, max_distance: int, id_offset: int) -> Matches:
    q = np.ascontiguousarray(queries).view(np.uint64)
    db = np.ascontiguousarray(hashes).view(np.uint64)
    capacity = 64 + 4 * len(q)
    while True:
        out = [np.empty(capacity, np.int64) for _ in range(3)]
        n = _scan(q, db, max_distance, *out)
        if n <= capacity:
            return out[0][:n], out[1][:n] + id_offset, out[2][:n]
        capacity = n


def _as_matrix(hashes: U8) -> U8:
    arr = np.ascontiguousarray(hashes, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != HASH_BYTES:
        raise ValueError(f"hashes must be an (n, {HASH_BYTES}) uint8 matrix, got {arr.shape}")
    return arr


LAYOUTS = ("fast", "compact", "wide")


class HashIndex:
    """All hashes within a Hamming distance of each query. Ids are row numbers, in add order.

    Layouts: "fast" (16 tables with inline words), "compact" (16 tables of ids only: a
    random access per candidate), "wide" (11 tables with longer keys,
    `modq.detectors.mih_wide`: far fewer candidates in large indexes)."""

    def __init__(
        self, hashes: U8 | None = None, compact: bool = False, layout: str | None = None
    ) -> None:
        self.layout = layout or ("compact" if compact else "fast")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; one of {LAYOUTS}")
        # compact: no inline words (64 instead of 320 bytes of tables per hash); candidates
        # are checked against the hash rows, a random access each.
        self.compact = self.layout != "fast"
        self._wide: dict[str, npt.NDArray[Any]] = {}
        self._main = np.zeros((0, HASH_BYTES), np.uint8)
        self._delta: list[U8] = []
        self._delta_rows = 0
        self._build(_as_matrix(hashes) if hashes is not None else self._main)

    def __len__(self) -> int:
        return len(self._main) + self._delta_rows

    def _build(self, hashes: U8) -> None:
        n = len(hashes)
        self._main = hashes
        self._delta, self._delta_rows = [], 0
        if self.layout == "wide":
            from modq.detectors import mih_wide

            self._wide = mih_wide.build(hashes)
            return
        chunks = hashes.view(">u2")  # (n, 16) chunk values, one column at a time below
        u64 = hashes.view(np.uint64)
        self._offsets = np.zeros((CHUNKS, 65537), np.int64)
        self._ids = np.empty(CHUNKS * n, np.int32)
        # Two other words of each entry's hash, interleaved: one cache line serves 4 entries.
        self._inline = np.empty((0 if self.compact else CHUNKS * n, 2), np.uint64)
        for c in range(CHUNKS):
            column = chunks[:, c].astype(np.uint16)
            order = np.argsort(column, kind="stable")  # a radix sort for 16-bit keys
            counts = np.bincount(column, minlength=65536)
            self._offsets[c, 1:] = np.cumsum(counts)
            self._offsets[c] += c * n
            block = slice(c * n, (c + 1) * n)
            self._ids[block] = order
            if not self.compact:
                w = c // 4
                self._inline[block, 0] = u64[order, (w + 1) % 4]
                self._inline[block, 1] = u64[order, (w + 2) % 4]
        self._delta, self._delta_rows = [], 0

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The search structure as plain arrays (the hashes themselves excluded), for a file
        that `from_arrays` maps back; folds the delta in first."""
        if self._delta:
            self._build(np.concatenate([self._main, *self._delta]))
        if self.layout == "wide":
            return dict(self._wide)
        arrays: dict[str, npt.NDArray[Any]] = {
            "offsets": self._offsets, "ids": self._ids, "inline": self._inline
        }  # fmt: skip
        if self.compact:
            del arrays["inline"]
        return arrays

    @classmethod
    def from_arrays(cls, hashes: U8, arrays: dict[str, npt.NDArray[Any]]) -> HashIndex:
        """An index over `hashes` from the arrays `arrays()` returned (read-only memory maps
        are fine: searching never writes)."""
        index = cls.__new__(cls)
        index._main = hashes
        index.compact = "inline" not in arrays
        index.layout = "wide" if "wide_ids" in arrays else "compact" if index.compact else "fast"
        index._wide = dict(arrays) if index.layout == "wide" else {}
        if index.layout == "wide":
            index._delta, index._delta_rows = [], 0
            return index
        empty = np.zeros((0, 2), np.uint64)
        index._offsets, index._ids, index._inline = (
            arrays["offsets"], arrays["ids"], arrays.get("inline", empty)
        )  # fmt: skip
        index._delta, index._delta_rows = [], 0
        return index

    def add(self, hashes: U8) -> None:
        """Append hashes; ids continue after the existing ones."""
        arr = _as_matrix(hashes)
        self._delta.append(arr)
        self._delta_rows += len(arr)
        if self._delta_rows >= _DELTA_REBUILD:
            self._build(np.concatenate([self._main, *self._delta]))

    def search(
        self, queries: U8, max_distance: int = MAX_INDEXED_DISTANCE, radius: int | None = None
    ) -> Matches:
        """(query row, hash id, distance) of every pair within `max_distance`.

        `radius` is how many flipped bits are probed per chunk; None is exact to 31 in every
        layout (1 in fast and compact, 2 in wide). Fewer probes miss some pairs: `radius=0`
        is exact to distance 15 with 17x fewer probes (fast, compact) or exact to 10 (wide);
        `radius=1` in wide is exact to 21 (see the module docstrings for the recall)."""
        exact = 2 if self.layout == "wide" else 1
        radius = exact if radius is None else radius
        if not 0 <= radius <= exact:
            raise ValueError(f"radius must be 0..{exact} in the {self.layout} layout: {radius}")
        q = _as_matrix(queries)
        delta = np.concatenate(self._delta) if self._delta else self._main[:0]
        if max_distance > MAX_INDEXED_DISTANCE:
            everything = np.concatenate([self._main, delta])
            return _brute_force(q, everything, max_distance, 0)
        parts = [self._search_main(q, max_distance, radius)]
        if len(delta):
            parts.append(_brute_force(q, delta, max_distance, len(self._main)))
        qs, js, ds = (np.concatenate(p) for p in zip(*parts, strict=True))
        return qs, js, ds

    def _search_main(self, q: U8, max_distance: int, radius: int) -> Matches:
        capacity = 64 + 4 * len(q)
        while True:
            out = [np.empty(capacity, np.int64) for _ in range(3)]
            if self.layout == "wide":
                from modq.detectors import mih_wide

                n = mih_wide.search(q, self._main, self._wide, max_distance, radius, out)
            elif self.compact:
                n = _search_compact(
                    q.view(np.uint64), q, self._offsets, self._ids, self._main.view(np.uint64),
                    self._main, max_distance, radius, *out,
                )  # fmt: skip
            else:
                n = _search(
                    q.view(np.uint64), q, self._offsets, self._ids, self._inline.reshape(-1),
                    self._main.view(np.uint64), self._main, max_distance, radius, *out,
                )  # fmt: skip
            if n <= capacity:
                return out[0][:n], out[1][:n], out[2][:n]
            capacity = n
