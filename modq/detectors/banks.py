"""Known-bad image banks and duplicate photos, matched by PDQ hash (like Meta's HMA).

`BankMatcher` keeps two in-memory `HashIndex`es: every bank hash (quality at least
`min_quality`) and the photo hashes of the last `duplicate_window_days`. Both are loaded from
the database when the worker starts and reloaded every `refresh_s` seconds (setting
MODQ_BANK_REFRESH_S), so `modq bank add/remove` reaches running workers within that interval.
Photos this worker moderates are added to the duplicate index at once.

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
from datetime import UTC, datetime, timedelta

from modq.detectors.hashing import DIHEDRAL, PhotoHash, to_matrix
from modq.detectors.mih import HashIndex
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


class BankMatcher:
    def __init__(self, store: BankStore, config: BankConfig) -> None:
        self.store = store
        self.config = config
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._banks = HashIndex()
        self._bank_entries: list[BankHash] = []
        self._recent = HashIndex()
        self._recent_owner: list[tuple[str | None, str]] = []

    def refresh(self, force: bool = False) -> None:
        """Reload banks and the recent-photo window when `refresh_s` has passed."""
        if not force and time.monotonic() - self._loaded_at < self.config.refresh_s:
            return
        entries = self.store.load_bank_hashes(self.config.min_quality)
        since = datetime.now(UTC) - timedelta(days=self.config.duplicate_window_days)
        recent = self.store.load_recent_photo_hashes(since, self.config.min_quality)
        banks = HashIndex(to_matrix([e.hash for e in entries]))
        photos = HashIndex(to_matrix([r[0] for r in recent]))
        with self._lock:
            self._banks, self._bank_entries = banks, entries
            self._recent, self._recent_owner = photos, [(r[1], r[2]) for r in recent]
            self._loaded_at = time.monotonic()
        log.info("image banks: %d hashes; %d recent photo hashes", len(entries), len(recent))

    def check(self, keys: Sequence[PhotoKey], hashes: Sequence[PhotoHash]) -> list[PhotoMatches]:
        """Scores and evidence for each photo; remembers the photos for later duplicate checks
        and saves their hashes to the database."""
        self.refresh()
        cfg = self.config
        out = [PhotoMatches() for _ in hashes]
        usable = [i for i, h in enumerate(hashes) if h.quality >= cfg.min_quality]
        if not usable:
            self._remember(keys, hashes)
            return out
        queries = to_matrix([hashes[i].bytes for i in usable])
        with self._lock:
            banks, entries = self._banks, self._bank_entries
            recent, owners = self._recent, self._recent_owner
        best: dict[tuple[int, str], tuple[int, int, int]] = {}  # (photo, bank) -> (d, id, variant)
        for q, j, d in zip(*banks.search(queries, cfg.max_distance), strict=True):
            self._keep(best, usable[int(q)], entries[int(j)].bank, int(d), int(j), 0)
        turned = [(i, v) for i in usable for v in range(1, len(hashes[i].dihedral))]
        if turned and len(banks):
            rows = to_matrix([hashes[i].dihedral[v] for i, v in turned])
            for q, j, d in zip(*banks.search(rows, cfg.max_distance, radius=0), strict=True):
                i, v = turned[int(q)]
                self._keep(best, i, entries[int(j)].bank, int(d), int(j), v)
        for (i, bank), (d, j, v) in best.items():
            out[i].scores[f"banks.{bank}"] = similarity(d)
            out[i].evidence[f"banks.{bank}"] = describe(entries[j], v)
        for q, j, d in zip(*recent.search(queries, cfg.max_distance), strict=True):
            photo = keys[usable[int(q)]]
            seller, listing = owners[int(j)]
            if listing == photo.listing_id or seller is None or seller == photo.seller_id:
                continue
            scores = out[usable[int(q)]].scores
            scores["duplicate.photo"] = max(scores.get("duplicate.photo", 0.0), similarity(int(d)))
            log.info(
                "duplicate photo: listing %s photo %d matches listing %s of seller %s (d=%d)",
                photo.listing_id, photo.photo_index, listing, seller, d,
            )  # fmt: skip
        self._remember(keys, hashes)
        return out

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
        self.store.save_photo_hashes(rows)
        good = [
            (k, h)
            for k, h in zip(keys, hashes, strict=True)
            if h.quality >= self.config.min_quality
        ]
        if good:
            with self._lock:
                self._recent.add(to_matrix([h.bytes for _, h in good]))
                self._recent_owner.extend((k.seller_id, k.listing_id) for k, _ in good)
