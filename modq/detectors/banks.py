"""Known-bad image banks and duplicate photos, matched by PDQ hash (like Meta's HMA).

`BankMatcher` searches two indexes: every bank hash (quality at least `min_quality`), in this
process's memory, and the photo hashes of the last `duplicate_window_days`, one copy per host
in memory-mapped files (`modq.detectors.photo_index`, `modq.detectors.shared_index`). A
background thread refreshes both every `refresh_s` seconds (setting MODQ_BANK_REFRESH_S): the
banks when their version counter moved (every `modq bank` edit moves it, removals and
disables included), the photo index by the rows above its watermark. A batch reads whatever
the last refresh swapped in and never waits for one. `refresh_s` 0 refreshes on every batch,
in the batch (tests, `modq classify`). Photos this process moderates are searched at once,
from a small private list, until the shared index has them.

Scores it contributes per photo, keyed like every detector score:
  "banks.<NAME>"      1 - distance/256 of the nearest hash of bank NAME within `max_distance`
  "duplicate.photo"   1 - distance/256 of the nearest recent photo of *another* seller
and, per bank hit, evidence for the verdict's reason: the matched hash's content id and note,
and which dihedral variant matched.

Dihedral matching: a photo is looked up as uploaded (exact multi-index search) and as its 7
other rotations/mirrors (the hashes `pdqhash.compute_dihedral` derives in the same pass; each
looked up with one probe per table, exact to distance 15). Bank entries stay one hash each,
so imported hash lists, which come without images, match rotated uploads too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modq.detectors.hashing import DIHEDRAL, PhotoHash, to_matrix
from modq.detectors.mih import HashIndex, _brute_force
from modq.detectors.photo_index import PdqKind, PhotoFeed, fingerprint, search
from modq.detectors.shared_index import SharedIndex, View
from modq.store.interface import BankHash, BankStore, PhotoHashRow

log = logging.getLogger(__name__)

HASH_BITS = 256


def similarity(distance: int) -> float:
    return round(1.0 - distance / HASH_BITS, 6)


@dataclass(frozen=True)
class BankConfig:
    max_distance: int = 31
    min_quality: int = 50
    duplicate_window_days: float = 30.0
    refresh_s: float = 60.0
    # The recent-photo index's layout (modq.detectors.mih): "fast", "compact" (a third of the
    # memory) or "wide" (less memory than compact, 4-6x its lookups at 10M hashes).
    index_layout: str = "fast"
    # Probes per chunk of the duplicate check's search: None is exact to `max_distance`
    # (up to 31); fewer probes trade recall for speed (HashIndex.search, docs/scaling.md).
    duplicate_radius: int | None = None


@dataclass(frozen=True)
class PhotoKey:
    listing_id: str
    listing_version: int
    photo_index: int
    seller_id: str | None


@dataclass
class PhotoMatches:
    """What the matcher found for one photo: scores, and per bank key the evidence text."""

    scores: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)


def describe(entry: BankHash, variant: int) -> str:
    """Evidence for a reason: which list entry matched, and how the upload was turned."""
    parts = [f"content id {entry.content_id}" if entry.content_id else f"hash {entry.hash.hex()}"]
    if entry.note:
        parts.append(f"note {entry.note!r}")
    if variant:
        parts.append(f"matched the upload's {DIHEDRAL[variant]} variant")
    return "; ".join(parts)


@dataclass(frozen=True)
class Banks:
    """The bank hashes of one version, swapped in as a whole."""

    version: int = -1
    index: HashIndex = field(default_factory=HashIndex)
    entries: list[BankHash] = field(default_factory=list)


OWN_COLUMNS = ("hashes", "listing", "seller", "seq", "seen")


@dataclass(frozen=True)
class Own:
    """Photos this process saved that the shared index may not have yet (seq above its
    watermark); dropped as soon as it has them."""

    hashes: np.ndarray = field(default_factory=lambda: np.zeros((0, 32), np.uint8))
    listing: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    seller: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def above(self, watermark: int) -> Own:
        keep = self.seq > watermark
        return Own(*(getattr(self, k)[keep] for k in OWN_COLUMNS))

    def __add__(self, other: Own) -> Own:
        return Own(*(np.concatenate([getattr(self, k), getattr(other, k)]) for k in OWN_COLUMNS))


class BankMatcher:
    def __init__(self, store: BankStore, config: BankConfig, index_dir: Path) -> None:
        self.store = store
        self.config = config
        self.photos = SharedIndex(
            index_dir / "photos",
            PdqKind(config.index_layout),
            PhotoFeed(store, config.duplicate_window_days, config.min_quality),
            config.duplicate_window_days * 86400.0,
        )
        self._banks = Banks()
        self._own = Own()
        self._own_lock = threading.Lock()
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def refresh(self) -> None:
        """Reload the banks if their version moved; bring the photo index up to date (or, in
        a process that is not the host's writer, map what the writer published)."""
        version = self.store.bank_version()
        if version != self._banks.version:
            version, entries = self.store.load_bank_hashes(self.config.min_quality)
            self._banks = Banks(version, HashIndex(to_matrix([e.hash for e in entries])), entries)
            log.info("image banks: version %d, %d hashes", version, len(entries))
        self.photos.refresh()

    def start(self) -> None:
        """Load everything once (the first batch waits for this, once), then keep refreshing
        in a background thread unless `refresh_s` is 0."""
        with self._started:
            if self._banks.version >= 0:
                return
            self.refresh()
            if self.config.refresh_s > 0:
                self._thread = threading.Thread(
                    target=self._loop, name="modq-bank-refresh", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.photos.close()

    def _loop(self) -> None:
        # Readers look for a new manifest every second (cheap: one small file); the database
        # is asked every refresh_s.
        poll = min(1.0, self.config.refresh_s)
        due = time.monotonic() + self.config.refresh_s
        while not self._stop.wait(poll):
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + self.config.refresh_s
                    self.refresh()
                elif not self.photos.writer:
                    self.photos.refresh()
            except Exception:  # the database may be down: keep serving the last state
                log.exception("refreshing the image banks and photo index failed")

    def check(self, keys: Sequence[PhotoKey], hashes: Sequence[PhotoHash]) -> list[PhotoMatches]:
        """Scores and evidence for each photo; remembers the photos for later duplicate checks
        and saves their hashes to the database."""
        self.start()
        if self.config.refresh_s <= 0:
            self.refresh()
        cfg = self.config
        out = [PhotoMatches() for _ in hashes]
        usable = [i for i, h in enumerate(hashes) if h.quality >= cfg.min_quality]
        if not usable:
            self._remember(keys, hashes)
            return out
        queries = to_matrix([hashes[i].bytes for i in usable])
        banks, view = self._banks, self.photos.view
        banks_index, entries = banks.index, banks.entries
        best: dict[tuple[int, str], tuple[int, int, int]] = {}  # (photo, bank) -> (d, id, variant)
        for q, j, d in zip(*banks_index.search(queries, cfg.max_distance), strict=True):
            self._keep(best, usable[int(q)], entries[int(j)].bank, int(d), int(j), 0)
        turned = [(i, v) for i in usable for v in range(1, len(hashes[i].dihedral))]
        if turned and len(banks_index):
            rows = to_matrix([hashes[i].dihedral[v] for i, v in turned])
            for q, j, d in zip(*banks_index.search(rows, cfg.max_distance, radius=0), strict=True):
                i, v = turned[int(q)]
                self._keep(best, i, entries[int(j)].bank, int(d), int(j), v)
        for (i, bank), (d, j, v) in best.items():
            out[i].scores[f"banks.{bank}"] = similarity(d)
            out[i].evidence[f"banks.{bank}"] = describe(entries[j], v)
        self._duplicates(view, [keys[i] for i in usable], queries, [out[i] for i in usable])
        self._remember(keys, hashes)
        return out

    def _duplicates(
        self, view: View, keys: Sequence[PhotoKey], queries: np.ndarray, out: list[PhotoMatches]
    ) -> None:
        """ "duplicate.photo" for photos within reach of a recent photo of another listing of
        another known seller, seen inside the window."""
        cfg = self.config
        listing = np.array([fingerprint(k.listing_id) for k in keys], np.uint64)
        seller = np.array([fingerprint(k.seller_id) for k in keys], np.uint64)
        cutoff = self.photos.clock() - self.photos.window_s
        found = [
            (qs, ds, rows["listing"][js], rows["seller"][js], rows["seen"][js] >= cutoff)
            for rows, qs, js, ds in search(view, queries, cfg.max_distance, cfg.duplicate_radius)
        ]
        with self._own_lock:
            own = self._own = self._own.above(view.watermark)
        qs, js, ds = _brute_force(queries, own.hashes, cfg.max_distance, 0)
        found.append((qs, ds, own.listing[js], own.seller[js], own.seen[js] >= cutoff))
        for qs, ds, their_listing, their_seller, recent in found:
            hit = recent & (their_listing != listing[qs]) & (their_seller != 0)
            hit &= their_seller != seller[qs]
            for q, d in zip(qs[hit].tolist(), ds[hit].tolist(), strict=True):
                scores = out[q].scores
                scores["duplicate.photo"] = max(scores.get("duplicate.photo", 0.0), similarity(d))
                log.info(
                    "duplicate photo: listing %s photo %d is %d bits from another seller's",
                    keys[q].listing_id, keys[q].photo_index, d,
                )  # fmt: skip

    @staticmethod
    def _keep(
        best: dict[tuple[int, str], tuple[int, int, int]], photo: int, bank: str, d: int, j: int,
        variant: int,
    ) -> None:  # fmt: skip
        key = (photo, bank)
        if key not in best or (d, variant) < best[key][::2]:
            best[key] = (d, j, variant)

    def _remember(self, keys: Sequence[PhotoKey], hashes: Sequence[PhotoHash]) -> None:
        rows = [
            PhotoHashRow(
                k.listing_id, k.photo_index, k.listing_version, k.seller_id, h.bytes, h.quality
            )
            for k, h in zip(keys, hashes, strict=True)
        ]
        seqs = self.store.save_photo_hashes(rows)
        good = [
            (k, h, s)
            for k, h, s in zip(keys, hashes, seqs, strict=True)
            # seq 0: a newer version of the same photo in this batch replaced it unsaved
            if h.quality >= self.config.min_quality and s > 0
        ]
        if good:
            add = Own(
                to_matrix([h.bytes for _, h, _ in good]),
                np.array([fingerprint(k.listing_id) for k, _, _ in good], np.uint64),
                np.array([fingerprint(k.seller_id) for k, _, _ in good], np.uint64),
                np.array([s for _, _, s in good], np.int64),
                np.full(len(good), self.photos.clock()),
            )
            with self._own_lock:
                self._own = self._own + add
