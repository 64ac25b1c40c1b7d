"""The per-host recent-photo index and the bank reload on real PostgreSQL: refreshes racing
with writers and with batches (nothing lost, nothing doubled), a removed or disabled bank hash
stops matching after one refresh, eviction at the window's edge, and a restarted process
warming up from the files another process wrote (real separate processes, real flock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from modq.detectors import mih_wide
from modq.detectors.banks import BankConfig, BankMatcher, PhotoKey
from modq.detectors.hashing import PhotoHash
from modq.detectors.mih import HashIndex, _brute_force
from modq.detectors.photo_index import PdqKind, PhotoFeed
from modq.detectors.shared_index import SharedIndex, Tiers
from modq.store.banks import SqlBankStore, add_to_bank, remove_from_bank, set_enabled
from modq.store.database import make_engine, migrate
from modq.store.interface import BankEntry, PhotoHashRow, PhotoRows
from tests.conftest import create_database, drop_database

WINDOW_DAYS = 30.0


@pytest.fixture
def store() -> Iterator[SqlBankStore]:
    """A database of its own: the counters and photo_hashes start empty."""
    url = create_database("modq_test_hidx")
    migrate(url)
    engine = make_engine(url)
    yield SqlBankStore(engine)
    engine.dispose()
    drop_database(url)


def _hashes(rng: np.random.Generator, n: int) -> list[bytes]:
    return [bytes(row) for row in rng.integers(0, 256, (n, 32), dtype=np.uint8)]


def _rows(hashes: list[bytes], prefix: str, version: int = 1) -> list[PhotoHashRow]:
    return [
        PhotoHashRow(f"{prefix}-{i}", 0, version, f"s-{prefix}", h, 90)
        for i, h in enumerate(hashes)
    ]


def _index(store: SqlBankStore, root: Path, tiers: Tiers) -> SharedIndex:
    feed = PhotoFeed(store, WINDOW_DAYS, 50)
    return SharedIndex(root, PdqKind(), feed, WINDOW_DAYS * 86400, tiers)


def _seqs(index: SharedIndex) -> list[int]:
    return [int(s) for seg in index.view.segments for s in seg.rows["seq"]]


def test_refresh_racing_writers_loses_and_doubles_nothing(
    store: SqlBankStore, tmp_path: Path
) -> None:
    """Writers save rows (new listings and newer versions of earlier ones) while the host's
    writer refreshes in a loop, small tiers forcing merges and compactions; a second index on
    the same files is a reader. Every row the database holds is in the index exactly once."""
    tiers = Tiers(scan_max=40, max_segments=3, delta_ratio=0.5)
    writer = _index(store, tmp_path, tiers)
    writer.builder_priority = "low"
    reader = _index(store, tmp_path, tiers)
    assert writer.refresh().action == "built" and writer.writer
    assert reader.refresh().role == "reader" and not reader.writer
    assert writer.refresh().action == "unchanged"  # the builder process is up before the race
    assert writer._builder is not None
    # Asked to, it yields the CPU to the worker's batches (nice 19).
    (builder_pid,) = writer._builder._processes
    assert os.getpriority(os.PRIO_PROCESS, builder_pid) == 19
    done = threading.Event()
    actions: list[str] = []

    def refresh_loop() -> None:
        while not done.is_set():
            actions.append(writer.refresh().action)
            reader.refresh()

    def write(t: int) -> None:
        rng = np.random.default_rng(t)
        for b in range(25):
            store.save_photo_hashes(_rows(_hashes(rng, 6), f"t{t}-b{b}"))
            if b % 5 == 4:  # a newer version of an earlier listing replaces its rows
                store.save_photo_hashes(_rows(_hashes(rng, 6), f"t{t}-b{b - 2}", version=2))

    refresher = threading.Thread(target=refresh_loop)
    refresher.start()
    writers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    refresher.join()
    writer.refresh()
    assert {"appended", "compacted"} <= set(actions), actions
    # Small segments beyond max_segments are merged (and nothing else is touched).
    writer.tiers = Tiers(scan_max=40, max_segments=1, delta_ratio=100)
    rng = np.random.default_rng(99)
    for b in range(3):
        store.save_photo_hashes(_rows(_hashes(rng, 3), f"late-{b}"))
        actions.append(writer.refresh().action)
    assert "merged" in actions[-2:], actions

    now = PhotoRows()
    for page in store.photo_rows(None, _long_ago(), 0):
        now.seq += page.seq
    seqs = _seqs(writer)
    assert len(seqs) == len(set(seqs)), "a row is in the index twice"
    # Superseded versions may wait for the next compaction; every current row is there.
    assert set(now.seq) <= set(seqs)
    deadline = time.monotonic() + 10
    while reader.view.generation != writer.view.generation and time.monotonic() < deadline:
        reader.refresh()
    assert sorted(_seqs(reader)) == sorted(seqs)

    # A compaction keeps exactly the current rows, one per (listing, photo).
    merged = np.load(tmp_path / writer._merge(writer.view.segments) / "rows.seq.npy")
    assert sorted(merged.tolist()) == sorted(now.seq)
    writer.close()
    reader.close()


def _long_ago() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def _photo(h: bytes) -> PhotoHash:
    return PhotoHash(hex=h.hex(), quality=90)


def _matcher(
    store: SqlBankStore,
    root: Path,
    refresh_s: float,
    window_days: float = WINDOW_DAYS,
    layout: str = "fast",
) -> BankMatcher:
    return BankMatcher(store, BankConfig(31, 50, window_days, refresh_s, layout), root)


@pytest.mark.parametrize("layout", ["fast", "wide"])
def test_batches_racing_with_background_refresh_find_every_duplicate(
    store: SqlBankStore, tmp_path: Path, layout: str
) -> None:
    """Batches run in two threads while the background thread refreshes every 20 ms: a photo
    checked by one seller is always a duplicate for the next seller, whether it sits in the
    process's own list or already in the shared index; another process's matcher on the same
    files (a reader) finds all of them once it has mapped the writer's generation."""
    matcher = _matcher(store, tmp_path, refresh_s=0.02, layout=layout)
    matcher.photos.tiers = Tiers(scan_max=30, max_segments=2)
    other = _matcher(store, tmp_path, refresh_s=0.02, layout=layout)
    for m in (matcher, other):  # the wide tables at any size (by default from 2M rows)
        m.photos.kind = PdqKind(layout, wide_min_rows=0)
    misses: list[str] = []
    seen: list[bytes] = []

    def batches(t: int) -> None:
        rng = np.random.default_rng(100 + t)
        for b in range(40):
            hashes = _hashes(rng, 4)
            keys = [PhotoKey(f"a{t}-{b}-{i}", 1, 0, f"alice{t}") for i in range(4)]
            matcher.check(keys, [_photo(h) for h in hashes])
            thief = [PhotoKey(f"m{t}-{b}-{i}", 1, 0, "mallory") for i in range(4)]
            found = matcher.check(thief, [_photo(h) for h in hashes])
            misses.extend(
                f"{t}/{b}/{i}" for i, f in enumerate(found) if "duplicate.photo" not in f.scores
            )
            seen.extend(hashes)

    threads = [threading.Thread(target=batches, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert misses == []
    assert matcher.photos.writer
    other.start()  # a reader: the writer's lock is held
    assert not other.photos.writer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and other.photos.view.watermark < store.photo_counter():
        time.sleep(0.02)  # the reader thread polls the manifest every 20 ms
    third = [PhotoKey(f"x-{i}", 1, 0, "eve") for i in range(len(seen))]
    found = other.check(third, [_photo(h) for h in seen])
    assert all("duplicate.photo" in f.scores for f in found)
    # The shared index answered (not only the processes' own lists): it has structures.
    searchers = [s.searcher for s in other.photos.view.segments if s.searcher is not None]
    assert searchers and all(s.layout == layout for s in searchers)
    other.close()
    matcher.close()


def test_removed_or_disabled_bank_hash_stops_matching_within_one_refresh(
    store: SqlBankStore, tmp_path: Path
) -> None:
    matcher = _matcher(store, tmp_path, refresh_s=3600)  # refreshed by hand below
    rng = np.random.default_rng(7)
    banned, other = _hashes(rng, 2)
    bank = f"b-{uuid.uuid4().hex[:6]}"
    add_to_bank(
        store.engine, bank, [BankEntry(banned, 100, content_id="X-1"), BankEntry(other, 100)]
    )
    matcher.start()
    key = [PhotoKey("l-1", 1, 0, "s")]

    def hit() -> bool:
        return f"banks.{bank}" in matcher.check(key, [_photo(banned)])[0].scores

    assert hit()
    set_enabled(store.engine, bank, False, content_ids=["X-1"])
    assert hit()  # not refreshed yet: the batch path never reloads
    matcher.refresh()
    assert not hit()
    set_enabled(store.engine, bank, True, content_ids=["X-1"])
    matcher.refresh()
    assert hit()
    set_enabled(store.engine, bank, False)  # the whole bank
    matcher.refresh()
    assert not hit()
    set_enabled(store.engine, bank, True)
    matcher.refresh()
    assert hit()
    assert remove_from_bank(store.engine, bank, [banned]) == 1
    matcher.refresh()
    assert not hit()
    version = matcher._banks.version
    matcher.refresh()  # nothing changed: nothing reloaded
    assert matcher._banks.version == version
    matcher.close()


def test_eviction_at_the_window_edge(store: SqlBankStore, tmp_path: Path) -> None:
    """A photo seen at t matches until t + window and not after; the compaction that follows
    removes it from the files."""
    window_days = 100 / 86400
    matcher = _matcher(store, tmp_path, refresh_s=3600, window_days=window_days)
    matcher.photos.tiers = Tiers(scan_max=5)
    offset = [0.0]
    matcher.photos.clock = lambda: time.time() + offset[0]
    rng = np.random.default_rng(9)
    old = _hashes(rng, 8)
    matcher.check([PhotoKey(f"o-{i}", 1, 0, "alice") for i in range(8)], [_photo(h) for h in old])
    matcher.refresh()
    assert len(matcher.photos.view) == 8
    probe = [PhotoKey(f"p-{i}", 1, 0, "bob") for i in range(8)]

    def duplicates() -> int:
        found = matcher.check(probe, [_photo(h) for h in old])
        return sum("duplicate.photo" in f.scores for f in found)

    offset[0] = 95.0  # bob's own rows land now + 95 s: inside every window below
    assert duplicates() == 8
    offset[0] = 102.0
    assert duplicates() == 0
    matcher.refresh()  # all of the first segment has expired: compacted away
    assert all(
        int(s) not in range(1, 9) for seg in matcher.photos.view.segments for s in seg.rows["seq"]
    )
    assert duplicates() == 0
    matcher.close()


WARM_UP = """
import json, sys
import numpy as np
from pathlib import Path
from modq.detectors.photo_index import PdqKind, PhotoFeed
from modq.detectors.shared_index import SharedIndex
from modq.store.banks import SqlBankStore
from modq.store.database import make_engine
store = SqlBankStore(make_engine(sys.argv[1]))
index = SharedIndex(Path(sys.argv[2]), PdqKind(), PhotoFeed(store, 30.0, 50), 30 * 86400.0)
done = index.refresh()
print(json.dumps({"role": done.role, "action": done.action, "rows": len(index.view),
                  "generation": index.view.generation,
                  "mapped": all(isinstance(s.rows["hash"], np.memmap)
                                for s in index.view.segments)}))
"""


def _process(url: str, root: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", WARM_UP, url, str(root)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_restarted_process_warms_up_from_the_shared_index(
    store: SqlBankStore, tmp_path: Path
) -> None:
    """The first process builds the files from the database; a restarted one (the lock free
    again) adopts them instead of rebuilding; a process started while another holds the lock
    maps them as a reader. Each is a real, separate process."""
    url = store.engine.url.render_as_string(hide_password=False)
    rng = np.random.default_rng(11)
    store.save_photo_hashes(_rows(_hashes(rng, 50), "w"))
    first = _process(url, tmp_path)
    assert (first["role"], first["action"], first["rows"]) == ("writer", "built", 50)
    store.save_photo_hashes(_rows(_hashes(rng, 5), "later"))
    again = _process(url, tmp_path)
    assert (again["role"], again["action"], again["rows"]) == ("writer", "adopted", 50)
    assert again["mapped"] is True
    holder = _index(store, tmp_path, Tiers())
    assert holder.refresh().action == "adopted"
    assert holder.refresh().action == "appended" and len(holder.view) == 55
    reader = _process(url, tmp_path)
    assert (reader["role"], reader["action"], reader["rows"]) == ("reader", "mapped", 55)
    assert reader["generation"] == holder.view.generation
    holder.close()


def test_versions_of_one_photo_in_one_save_and_an_older_redelivery(
    store: SqlBankStore, tmp_path: Path
) -> None:
    """Two versions of the same listing photo in one batch: the newer one is written (the
    other gets seq 0); a later redelivery of an older version changes nothing."""
    rng = np.random.default_rng(21)
    old, new, stale = _hashes(rng, 3)
    rows = [PhotoHashRow("l-v", 0, 2, "s", new, 90), PhotoHashRow("l-v", 0, 1, "s", old, 90)]
    seqs = store.save_photo_hashes(rows)
    assert seqs[1] == 0 and seqs[0] > 0
    store.save_photo_hashes([PhotoHashRow("l-v", 0, 1, "s", stale, 90)])
    index = _index(store, tmp_path, Tiers())
    index.refresh()
    (seg,) = index.view.segments
    assert [bytes(h) for h in seg.rows["hash"]] == [new]
    assert seg.rows["seq"].tolist() == [seqs[0]]
    index.close()


def _planted(rng: np.random.Generator, db: np.ndarray, n: int) -> np.ndarray:
    """Hashes of `db` with 0..40 random bits flipped (every distance around the limit)."""
    bits = np.unpackbits(db[rng.integers(0, len(db), n)], axis=1)
    for k, row in enumerate(bits):
        row[rng.choice(256, k % 41, replace=False)] ^= 1
    out: np.ndarray = np.packbits(bits, axis=1)
    return out


@pytest.mark.parametrize(
    ("rows", "width", "copies"), [(3_000, None, 2), (3_000, None, 400), (70_000, 4, 2)]
)
def test_wide_layout_finds_exactly_the_pairs_within_the_distance(
    tmp_path: Path, rows: int, width: int | None, copies: int
) -> None:
    """The wide layout against brute force, mapped from files as the workers map it: the
    exact search finds every pair within 31 bits once; fewer probes find a subset that holds
    every pair within the distance they guarantee (10 bits for radius 0, 21 for radius 1).
    Ids of 3 and 4 bytes; bucket offsets of 1 byte, and of 2 where one hash repeats."""
    rng = np.random.default_rng(rows)
    db = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    db[1:copies] = db[0]  # equal hashes: every copy is reported
    queries = np.concatenate([_planted(rng, db, 400), db[:1]])
    arrays = mih_wide.build(db, width=width)
    assert arrays["wide_delta"].dtype == (np.uint16 if copies > 255 else np.uint8)
    for key, arr in arrays.items():
        np.save(tmp_path / f"{key}.npy", arr)
    np.save(tmp_path / "hash.npy", db)
    mapped = {k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in mih_wide.ARRAYS}
    index = HashIndex.from_arrays(np.load(tmp_path / "hash.npy", mmap_mode="r"), mapped)
    assert index.layout == "wide"

    def pairs(found: tuple[np.ndarray, ...]) -> list[tuple[int, int, int]]:
        return list(zip(*(a.tolist() for a in found), strict=True))

    truth = set(pairs(_brute_force(queries, db, 31, 0)))
    assert len(truth) > 200 and (len(queries) - 1, copies - 1, 0) in truth
    exact = pairs(index.search(queries, 31))
    assert len(exact) == len(set(exact)) and set(exact) == truth
    for radius, guaranteed in ((0, 10), (1, 21)):
        found = pairs(index.search(queries, 31, radius=radius))
        assert len(found) == len(set(found)) and set(found) <= truth
        assert {p for p in truth if p[2] <= guaranteed} <= set(found)
        if radius == 0:  # one probe per chunk does miss far pairs
            assert len(set(found)) < len(truth)
    with pytest.raises(ValueError):
        index.search(queries, 31, radius=3)
    # The photo index builds small segments of a wide index in the compact layout.
    assert "wide_ids" not in PdqKind("wide").build({"hash": db})
    assert "wide_ids" in PdqKind("wide", wide_min_rows=rows).build({"hash": db})
