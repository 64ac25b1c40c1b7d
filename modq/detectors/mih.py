"""Exact Hamming range search over 256-bit PDQ hashes, fast enough for million-hash banks.

Multi-index hashing (Norouzi et al.): the 256 bits are cut into 16 chunks of 16 bits. Two
hashes within distance 31 differ by at most 1 bit in at least one chunk (pigeonhole: 16
chunks x 2 bits = 32 > 31), so probing, per chunk, the query's own 16-bit value and its
16 one-bit neighbours finds every match. Each chunk's table is a CSR bucket array sorted by
chunk value; next to each entry sit two other 64-bit words of the hash, so most candidates
are rejected while scanning a bucket sequentially, without a random memory access.

Memory is about 360 bytes per hash (~360 MB per million). Hashes added after the build go
to a small delta scanned by brute force until the next rebuild. Distances above 31 lose the
pigeonhole guarantee and are served by brute force over everything.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from modq.detectors.hashing import HASH_BYTES

CHUNKS = 16
MAX_INDEXED_DISTANCE = 31
_DELTA_REBUILD = 50_000

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
Matches = tuple[I64, I64, I64]


@njit(cache=True, inline="always")
def _popcount(x: np.uint64) -> np.uint64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


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
    out_q: I64,
    out_id: I64,
    out_d: I64,
) -> int:
    n_out = 0
    for i in range(q_u64.shape[0]):
        for c in range(16):
            w = c // 4
            qa = q_u64[i, (w + 1) % 4]
            qb = q_u64[i, (w + 2) % 4]
            base = (np.int64(q_u8[i, 2 * c]) << 8) | np.int64(q_u8[i, 2 * c + 1])
            for f in range(17):
                key = base if f == 0 else base ^ (1 << (f - 1))
                for p in range(offsets[c, key], offsets[c, key + 1]):
                    if _popcount(qa ^ inline[p, 0]) + _popcount(qb ^ inline[p, 1]) > max_distance:
                        continue
                    j = ids[p]
                    d = np.uint64(0)
                    for x in range(4):
                        d += _popcount(q_u64[i, x] ^ db_u64[j, x])
                    if d > max_distance:
                        continue
                    # Report each pair once: skip it if an earlier chunk also finds it.
                    seen = False
                    for c2 in range(c):
                        x1 = np.uint64(q_u8[i, 2 * c2] ^ db_u8[j, 2 * c2])
                        x2 = np.uint64(q_u8[i, 2 * c2 + 1] ^ db_u8[j, 2 * c2 + 1])
                        if _popcount(x1) + _popcount(x2) <= 1:
                            seen = True
                            break
                    if seen:
                        continue
                    if n_out < out_q.shape[0]:
                        out_q[n_out] = i
                        out_id[n_out] = j
                        out_d[n_out] = d
                    n_out += 1
    return n_out


def _brute_force(queries: U8, hashes: U8, max_distance: int, id_offset: int) -> Matches:
    qs, js, ds = [], [], []
    if len(hashes):
        db = hashes.view(np.uint64)
        for i, q in enumerate(queries.view(np.uint64)):
            dist = np.bitwise_count(db ^ q).sum(axis=1)
            hit = np.flatnonzero(dist <= max_distance)
            qs.append(np.full(len(hit), i, np.int64))
            js.append(hit.astype(np.int64) + id_offset)
            ds.append(dist[hit].astype(np.int64))
    if not qs:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy()
    return np.concatenate(qs), np.concatenate(js), np.concatenate(ds)


def _as_matrix(hashes: U8) -> U8:
    arr = np.ascontiguousarray(hashes, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != HASH_BYTES:
        raise ValueError(f"hashes must be an (n, {HASH_BYTES}) uint8 matrix, got {arr.shape}")
    return arr


class HashIndex:
    """All hashes within a Hamming distance of each query. Ids are row numbers, in add order."""

    def __init__(self, hashes: U8 | None = None) -> None:
        self._main = np.zeros((0, HASH_BYTES), np.uint8)
        self._delta: list[U8] = []
        self._delta_rows = 0
        self._build(_as_matrix(hashes) if hashes is not None else self._main)

    def __len__(self) -> int:
        return len(self._main) + self._delta_rows

    def _build(self, hashes: U8) -> None:
        n = len(hashes)
        self._main = hashes
        words = hashes.view(">u2").astype(np.int64)  # (n, 16) chunk values
        u64 = hashes.view(np.uint64)
        self._offsets = np.zeros((CHUNKS, 65537), np.int64)
        self._ids = np.empty(CHUNKS * n, np.int32)
        self._inline = np.empty((CHUNKS * n, 2), np.uint64)
        for c in range(CHUNKS):
            order = np.argsort(words[:, c], kind="stable")
            counts = np.bincount(words[:, c], minlength=65536)
            self._offsets[c, 1:] = np.cumsum(counts)
            self._offsets[c] += c * n
            block = slice(c * n, (c + 1) * n)
            self._ids[block] = order
            w = c // 4
            self._inline[block, 0] = u64[order, (w + 1) % 4]
            self._inline[block, 1] = u64[order, (w + 2) % 4]
        self._delta, self._delta_rows = [], 0

    def add(self, hashes: U8) -> None:
        """Append hashes; ids continue after the existing ones."""
        arr = _as_matrix(hashes)
        self._delta.append(arr)
        self._delta_rows += len(arr)
        if self._delta_rows >= _DELTA_REBUILD:
            self._build(np.concatenate([self._main, *self._delta]))

    def search(self, queries: U8, max_distance: int = MAX_INDEXED_DISTANCE) -> Matches:
        """(query row, hash id, distance) of every pair within `max_distance`."""
        q = _as_matrix(queries)
        delta = np.concatenate(self._delta) if self._delta else self._main[:0]
        if max_distance > MAX_INDEXED_DISTANCE:
            everything = np.concatenate([self._main, delta])
            return _brute_force(q, everything, max_distance, 0)
        parts = [self._search_main(q, max_distance)]
        if len(delta):
            parts.append(_brute_force(q, delta, max_distance, len(self._main)))
        qs, js, ds = (np.concatenate(p) for p in zip(*parts, strict=True))
        return qs, js, ds

    def _search_main(self, q: U8, max_distance: int) -> Matches:
        capacity = 64 + 4 * len(q)
        while True:
            out = [np.empty(capacity, np.int64) for _ in range(3)]
            n = _search(
                q.view(np.uint64), q, self._offsets, self._ids, self._inline,
                self._main.view(np.uint64), self._main, max_distance, *out,
            )  # fmt: skip
            if n <= capacity:
                return out[0][:n], out[1][:n], out[2][:n]
            capacity = n
