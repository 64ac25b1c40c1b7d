"""One index per host, refreshed incrementally off the batch path (the mechanism, not a kind).

An index is a list of immutable *segments*, each a folder of `.npy` files under `root`: the
rows (a `seq` column, a `seen` column in epoch seconds, and whatever the kind keeps per row)
and, for large segments, the kind's search structure. `CURRENT.json` (the manifest) names
the segments of the current generation and the watermark they reach. Every process of a
host maps the files read-only (`np.load(mmap_mode="r")`), so the host's page cache holds one
copy however many processes search it.

One process per host writes: whoever holds `writer.lock` (an `flock`, released by the kernel
when its holder dies, so another process takes over at its next refresh). The writer
- builds the whole index from the feed only when there is no usable manifest (first start,
  another database, a database reset below the watermark);
- otherwise reads the rows above the watermark, writes them as one new small segment and
  publishes a new manifest: cost proportional to the new rows;
- merges small segments into one when there are more than `Tiers.max_segments`, and rebuilds
  everything (evicting rows that left the window, keeping one row per key) when the segments
  after the first outgrow `Tiers.delta_ratio` of it or `Tiers.dead_ratio` of it has expired.
The reads, packing, builds and file writes after the first build run in a builder process
the writer spawns (they hold the GIL for much of their time; the writer's batches must not
wait for them). Readers re-read the manifest and map the new segments. Either way the new
`View` replaces the old one in one assignment: a lookup holds the `View` it started with and
never waits.

A kind (`modq.detectors.segments.IndexKind`) says how to build and search a segment: PDQ hashes
(`modq.detectors.photo_index`) and later look-alike embedding vectors share everything here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from modq.detectors.segments import (
    IndexKind,
    RowFeed,
    Segment,
    append_rows,
    load_columns,
    merge_segments,
    write_segment,
)

log = logging.getLogger(__name__)

MANIFEST = "CURRENT.json"


@dataclass(frozen=True)
class Tiers:
    scan_max: int = 20_000  # segments this small get no search structure: they are scanned
    max_segments: int = 8
    delta_ratio: float = 0.125
    dead_ratio: float = 0.25


@dataclass(frozen=True)
class View:
    """What a lookup reads: the segments of one generation and the watermark they reach."""

    generation: int
    watermark: int
    segments: tuple[Segment, ...] = ()

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)


@dataclass
class Refreshed:
    """What one `SharedIndex.refresh` did."""

    role: str  # "writer" or "reader"
    action: str  # "built", "appended", "merged", "compacted", "adopted", "mapped", "unchanged"
    rows: int = 0
    seconds: float = 0.0


@dataclass
class SharedIndex:
    root: Path
    kind: IndexKind
    feed: RowFeed
    window_s: float
    tiers: Tiers = field(default_factory=Tiers)
    clock: Callable[[], float] = time.time
    # "normal": the builder process competes for the CPU like any process. "low": nice 19,
    # so batches get the CPU first; measured on a saturated host it starved the refreshes
    # (none in a 200-batch run) without a better batch p99 (docs/scaling.md), so not default.
    builder_priority: str = "normal"

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.view = View(generation=-1, watermark=-1)
        self._lock: IO[bytes] | None = None
        self._opened: dict[str, Segment] = {}
        self._retired: list[tuple[float, str]] = []
        self._builder: ProcessPoolExecutor | None = None

    # ---- both roles -------------------------------------------------------------------

    def refresh(self) -> Refreshed:
        """One step: as the writer, bring the files up to the feed; as a reader, map what the
        writer published. Never blocks on the other role."""
        started = time.perf_counter()
        done = self._write() if self._is_writer() else self._read()
        done.seconds = time.perf_counter() - started
        if done.action != "unchanged":
            log.info(
                "%s index %s: %s %s (%d rows in %d segments, watermark %d) in %.3f s",
                self.kind.name, done.role, done.action, done.rows, len(self.view),
                len(self.view.segments), self.view.watermark, done.seconds,
            )  # fmt: skip
        return done

    @property
    def writer(self) -> bool:
        """Whether this process holds the host's writer lock (as of its last refresh)."""
        return self._lock is not None

    def close(self) -> None:
        if self._builder is not None:
            self._builder.shutdown()
            self._builder = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _is_writer(self) -> bool:
        if self._lock is None:
            handle = (self.root / "writer.lock").open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._lock = handle
        return True

    def _manifest(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.root / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        return data

    def _open(self, manifest: dict[str, Any]) -> View:
        """The manifest's segments, mapping only those this process has not mapped yet."""
        segments = []
        for name in manifest["segments"]:
            seg = self._opened.get(name)
            if seg is None:
                folder = self.root / name
                rows, structure = load_columns(folder, "rows."), load_columns(folder, "index.")
                if "seq" not in rows:
                    raise FileNotFoundError(f"segment {folder} is incomplete")
                seg = Segment(name, rows, structure, self.kind.open(rows, structure))
            segments.append(seg)
        self._opened = {s.name: s for s in segments}
        return View(int(manifest["generation"]), int(manifest["watermark"]), tuple(segments))

    def _read(self) -> Refreshed:
        manifest = self._manifest()
        if manifest is None or manifest["generation"] == self.view.generation:
            return Refreshed("reader", "unchanged")
        try:
            self.view = self._open(manifest)
        except FileNotFoundError:  # replaced while we read it: the next poll maps the new one
            return Refreshed("reader", "unchanged")
        return Refreshed("reader", "mapped", len(self.view))

    # ---- the writer ---------------------------------------------------------------------

    def _write(self) -> Refreshed:
        manifest = self._manifest()
        if self.view.generation < 0 or (
            manifest is not None and manifest["generation"] != self.view.generation
        ):
            if manifest is not None and self._usable(manifest):
                self.view = self._open(manifest)
                self._collect(set(manifest["segments"]), startup=True)
                return Refreshed("writer", "adopted", len(self.view))
            # The first build runs here: nothing is served from this index before it.
            rows, watermark = self.feed.rows(None)
            self._publish(
                [write_segment(self.root, rows, self.kind, self.tiers.scan_max, self.clock())],
                watermark,
            )
            return Refreshed("writer", "built", len(rows["seq"]))
        # The database read, the packing and the file writes run in the builder process:
        # this process only waits (its batches keep the GIL and the CPU).
        now = self.clock()
        args = (self.feed, self.view.watermark, self.root, self.kind, self.tiers.scan_max, now)
        name, n, watermark = self._builder_run(append_rows, *args)
        sizes = {s.name: len(s) for s in self.view.segments}
        segments = list(self.view.segments)
        if name is not None:
            sizes[name] = n
            segments.append(Segment(name, {"seq": np.zeros(n, np.int64)}, {}))
        names = [s.name for s in segments]
        action = "appended"
        deltas = sum(sizes[x] for x in names[1:])
        if names and (
            self._expired_share(segments[0]) > self.tiers.dead_ratio
            or deltas > max(self.tiers.delta_ratio * sizes[names[0]], self.tiers.scan_max)
        ):
            names, action = [self._merge(segments)], "compacted"
        elif len(names) > 1 + self.tiers.max_segments:
            names, action = [names[0], self._merge(segments[1:])], "merged"
        if not n and action == "appended":
            if watermark != self.view.watermark:
                self._publish(names, watermark)
            return Refreshed("writer", "unchanged")
        self._publish(names, watermark)
        return Refreshed("writer", action, n)

    def _usable(self, manifest: dict[str, Any]) -> bool:
        """A manifest written for this feed and kind, not ahead of the database (a reset)."""
        same = manifest.get("source") == self.feed.source_id() and manifest.get("kind") == (
            self.kind.name
        )
        return same and int(manifest["watermark"]) <= self.feed.counter()

    def _expired_share(self, seg: Segment) -> float:
        if not len(seg):
            return 0.0
        cutoff = self.clock() - self.window_s
        return float(np.count_nonzero(seg.rows["seen"] < cutoff)) / len(seg)

    def _merge(self, segments: Sequence[Segment]) -> str:
        """A new segment with the rows of `segments` still in the window, one per key."""
        cutoff = self.clock() - self.window_s
        names = [s.name for s in segments]
        args = (self.root, names, self.kind, cutoff, self.tiers.scan_max, self.clock())
        name: str = self._builder_run(merge_segments, *args)
        return name

    def _builder_run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in the builder process (spawned once, kept): reads, packing, builds and
        file writes hold the GIL for much of their time, and there they take it from no batch.
        The refresh thread only waits for the result."""
        if self._builder is None:
            self._builder = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow_parent,
                initargs=(os.getpid(), self.builder_priority),
            )
        try:
            return self._builder.submit(fn, *args).result()
        except BrokenProcessPool:  # the builder died (killed, out of memory): a new one next time
            self._builder = None
            raise

    def _publish(self, segments: Sequence[str], watermark: int) -> None:
        manifest: dict[str, Any] = {
            "generation": self.view.generation + 1,
            "source": self.feed.source_id(),
            "kind": self.kind.name,
            "watermark": watermark,
            "segments": list(segments),
            "written_at": self.clock(),
        }
        tmp = self.root / f"tmp-{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, self.root / MANIFEST)
        # Map what was just written, as readers will: lookups read the files, not the
        # arrays built in this process's memory.
        self.view = self._open(manifest)
        self._collect(set(manifest["segments"]))

    def _collect(self, keep: set[str], startup: bool = False) -> None:
        """Delete segments no manifest names any more, once readers have had time to move on
        (a reader that still maps one keeps its pages: unlinking does not unmap)."""
        now = time.monotonic()
        known = {name for _, name in self._retired}
        for folder in self.root.iterdir():
            name = folder.name
            if name in keep or name in known or name == "writer.lock" or name == MANIFEST:
                continue
            self._retired.append((now - (3600.0 if startup else 0.0), name))
        grace = 600.0
        keep_retired = []
        for since, name in self._retired:
            if name in keep:
                continue
            if now - since > grace:
                path = self.root / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            else:
                keep_retired.append((since, name))
        self._retired = keep_retired


def _follow_parent(parent: int, priority: str = "normal") -> None:
    """In the builder process: exit when the worker process that started it is gone (killed
    or crashed), instead of living on as an orphan; lower its CPU priority when asked (the
    threads it starts later inherit it)."""
    if priority == "low":
        os.setpriority(os.PRIO_PROCESS, 0, 19)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="modq-builder-watch", daemon=True).start()
