"""The "wide" multi-index layout: 11 tables with keys as long as the index is deep.

The 16-bit multi-index of `modq.detectors.mih` scans buckets of rows / 65,536 entries: at 10M
hashes a query with its 272 probes reads ~41,000 candidates, each a random access to the hash
rows in the compact layout. Here the 256 bits are cut into 11 chunks of `bits` bits (16 to
23, about log2(rows / 2): buckets of ~2 rows), and exactness to distance 31 comes from probing
up to 2 flipped bits per chunk instead of 1 (pigeonhole: 11 chunks x 3 bits = 33 > 31). At
10M that is 2,794 probes and ~6,700 candidates for an exact query, and the cheap probe
(`radius=0`: each chunk's own value, exact to distance 10) touches ~2 rows per table.

Per hash: 11 ids of 3 bytes (33 B; 4 bytes from 2**24 rows on) plus the bucket offsets,
11 x 2**bits x 1.5 bytes (a 4-byte base per 8 buckets and a 1-byte delta each: ~7 B a hash
at the chosen `bits`). Probing is latency-bound (~80 ns per random access on this machine's
VM, prefetched or not), so what counts is random accesses per query: each query's probes run
in stages over one table at a time (every probe's offsets, then every non-empty bucket's ids,
then every candidate's hash row), the accesses of a stage prefetched together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from modq.detectors.intrinsics import I64, U8, _popcount, _prefetch

WIDE_CHUNKS = 11
MIN_BITS, MAX_BITS = 16, 23

U32 = npt.NDArray[np.uint32]
ARRAYS = ("wide_base", "wide_delta", "wide_ids")  # a segment's files: index.<name>.npy
GROUP_SHIFT = 3
GROUP = 1 << GROUP_SHIFT


def key_bits(n: int) -> int:
    """Bits per chunk key for `n` rows: buckets of about 2 rows."""
    return int(min(MAX_BITS, max(MIN_BITS, round(np.log2(max(2, n) / 2)))))


@njit(cache=True, inline="always")
def _chunk(row: U8, c: int, bits: int) -> int:
    """Chunk `c` of a hash row: bits [c * bits, (c + 1) * bits), the first bit the most
    significant bit of byte 0."""
    start = c * bits
    b0 = start >> 3
    v = np.uint64(0)
    for t in range(4):
        v = (v << np.uint64(8)) | np.uint64(row[b0 + t] if b0 + t < 32 else 0)
    shift = np.uint64(32 - (start & 7) - bits)
    return int((v >> shift) & np.uint64((1 << bits) - 1))


@njit(cache=True, inline="always")
def _id(ids: U8, p: int, width: int) -> int:
    """Entry `p` of an id table of `width`-byte little-endian ids."""
    q = width * np.int64(p)
    j = np.int64(ids[q]) | (np.int64(ids[q + 1]) << 8) | (np.int64(ids[q + 2]) << 16)
    if width == 4:
        j |= np.int64(ids[q + 3]) << 24
    return int(j)


@njit(cache=True)
def _build(hashes: U8, bits: int, offsets: U32, ids: U8, width: int) -> None:
    """Counting sort of the rows by each chunk: offsets[c, key] .. offsets[c, key + 1] are
    the positions in table c (ids[c * n :]) of the rows whose chunk c is `key`."""
    n = hashes.shape[0]
    keys = np.empty(n, np.uint32)
    for c in range(WIDE_CHUNKS):
        counts = np.zeros(offsets.shape[1], np.int64)
        for j in range(n):
            k = _chunk(hashes[j], c, bits)
            keys[j] = k
            counts[k + 1] += 1
        for k in range(1, offsets.shape[1]):
            counts[k] += counts[k - 1]
        for k in range(offsets.shape[1]):
            offsets[c, k] = counts[k]
        base = c * n
        for j in range(n):  # counts[k] is now the next free position of key k
            k = keys[j]
            q = width * (base + counts[k])
            for t in range(width):
                ids[q + t] = (j >> (8 * t)) & 0xFF
            counts[k] += 1


def build(
    hashes: U8, bits: int | None = None, width: int | None = None
) -> dict[str, npt.NDArray[Any]]:
    """The tables over `hashes`: ids of 3 bytes below 2**24 rows (4 above); each bucket's
    offset as a 4-byte base per group of `GROUP` buckets plus a 1-byte delta (2 or 4 bytes
    where a group holds more rows: skewed hashes)."""
    n = len(hashes)
    bits = bits or key_bits(n)
    width = width or (3 if n < 1 << 24 else 4)
    offsets = np.zeros((WIDE_CHUNKS, (1 << bits) + 1), np.uint32)
    ids = np.empty(WIDE_CHUNKS * n * width, np.uint8)
    _build(np.ascontiguousarray(hashes), bits, offsets, ids, width)
    base = np.ascontiguousarray(offsets[:, ::GROUP])
    delta = offsets - np.repeat(base, GROUP, axis=1)[:, : offsets.shape[1]]
    top = int(delta.max()) if delta.size else 0
    small = np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32
    return {"wide_base": base, "wide_delta": delta.astype(small), "wide_ids": ids}


@njit(cache=True, inline="always")
def _offset(base: U32, delta: Any, c: int, k: int) -> int:
    return int(base[c, k >> GROUP_SHIFT]) + int(delta[c, k])


@njit(cache=True)
def _search_wide(
    q_u64: npt.NDArray[np.uint64],
    q_u8: U8,
    base: U32,
    delta: Any,
    ids: U8,
    width: int,
    db_u64: npt.NDArray[np.uint64],
    db_u8: U8,
    bits: int,
    flips: int,
    max_distance: int,
    out_q: I64,
    out_id: I64,
    out_d: I64,
) -> int:
    n = db_u8.shape[0]
    probes = 1 + bits + (bits * (bits - 1) // 2 if flips >= 2 else 0)
    if flips == 0:
        probes = 1
    keys = np.empty(probes, np.int64)
    lo = np.empty(probes, np.int64)
    hi = np.empty(probes, np.int64)
    n_out = 0
    for i in range(q_u8.shape[0]):
        for c in range(WIDE_CHUNKS):
            own = _chunk(q_u8[i], c, bits)
            k = 0
            keys[k] = own
            k += 1
            if flips >= 1:
                for a in range(bits):
                    keys[k] = own ^ (1 << a)
                    k += 1
            if flips >= 2:
                for a in range(bits):
                    for b in range(a + 1, bits):
                        keys[k] = own ^ (1 << a) ^ (1 << b)
                        k += 1
            for t in range(k):
                _prefetch(delta[c], keys[t])
                _prefetch(base[c], keys[t] >> GROUP_SHIFT)
            m = 0  # the non-empty buckets, compacted to the front
            for t in range(k):
                s, e = _offset(base, delta, c, keys[t]), _offset(base, delta, c, keys[t] + 1)
                if e > s:
                    lo[m] = c * n + s
                    hi[m] = c * n + e
                    _prefetch(ids, width * lo[m])
                    m += 1
            for t in range(m):
                for p in range(lo[t], hi[t]):
                    _prefetch(db_u8, 32 * _id(ids, p, width))
            for t in range(m):
                for p in range(lo[t], hi[t]):
                    j = _id(ids, p, width)
                    d = np.uint64(0)
                    for x in range(4):
                        d += _popcount(q_u64[i, x] ^ db_u64[j, x])
                    if d > max_distance:
                        continue
                    # Report the pair at the first chunk within `flips` only.
                    first = True
                    for c2 in range(c):
                        x2 = np.uint64(_chunk(q_u8[i], c2, bits) ^ _chunk(db_u8[j], c2, bits))
                        if _popcount(x2) <= flips:
                            first = False
                            break
                    if not first:
                        continue
                    if n_out < out_q.shape[0]:
                        out_q[n_out] = i
                        out_id[n_out] = j
                        out_d[n_out] = d
                    n_out += 1
    return n_out


def search(
    q: U8, hashes: U8, arrays: dict[str, npt.NDArray[Any]], max_distance: int, radius: int,
    out: list[I64],
) -> int:  # fmt: skip
    """Pairs into `out` (query, row, distance); how many there are. `radius`: flipped bits
    probed per chunk (2: exact to 31, 1: exact to 21, 0: exact to 10)."""
    base, delta = arrays["wide_base"], arrays["wide_delta"]
    bits = int(delta.shape[1] - 1).bit_length() - 1
    flips = radius
    db = np.asarray(hashes)
    ids = arrays["wide_ids"]
    width = len(ids) // max(1, WIDE_CHUNKS * len(db))
    db_u64 = db.view(np.uint64).reshape(-1, 4)
    args = (q.view(np.uint64), q, base, delta, ids, width, db_u64, db, bits, flips, max_distance)
    return int(_search_wide(*args, *out))
