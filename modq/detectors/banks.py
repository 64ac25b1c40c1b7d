"""Known-bad image banks and duplicate photos, matched by PDQ hash (like Meta's HMA).

`BankMatcher` keeps two in-memory `HashIndex`es: every bank hash (quality at least
`min_quality`) and the photo hashes of the last `duplicate_window_days`. Both are loaded from
the database when the worker starts and reloaded every `refresh_s` seconds (setting
MODQ_BANK_REFRESH_S), so `modq bank add/remove` reaches running workers within that interval.
Photos this worker moderates are added to the duplicate index at once.

Scores it contributes per photo, keyed like every detector score:
  "banks.<NAME>"      1 - distance/256 of the nearest hash of bank NAME within `max_distance`
  "duplicate.photo"   1 - distance/256 of the nearest recent photo of *another* seller
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from modq.detectors.hashing import PhotoHash, to_matrix
from modq.detectors.mih import HashIndex
from modq.store import banks as bank_store  # (moves with the lead's issue-10 split)

log = logging.getLogger(__name__)

HASH_BITS = 256


def similarity(distance: int) -> float:
    return round(1.0 - distance / HASH_BITS, 6)


def distance_of(score: float) -> int:
    return round((1.0 - score) * HASH_BITS)


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


class BankMatcher:
    def __init__(self, engine: Engine, config: BankConfig) -> None:
        self.engine = engine
        self.config = config
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._banks = HashIndex()
        self._bank_names: list[str] = []
        self._recent = HashIndex()
        self._recent_owner: list[tuple[str | None, str]] = []

    def refresh(self, force: bool = False) -> None:
        """Reload banks and the recent-photo window when `refresh_s` has passed."""
        if not force and time.monotonic() - self._loaded_at < self.config.refresh_s:
            return
        hashes, names = bank_store.load_bank_hashes(self.engine, self.config.min_quality)
        since = datetime.now(UTC) - timedelta(days=self.config.duplicate_window_days)
        recent = bank_store.load_recent_photo_hashes(self.engine, since, self.config.min_quality)
        banks, photos = HashIndex(to_matrix(hashes)), HashIndex(to_matrix([r[0] for r in recent]))
        with self._lock:
            self._banks, self._bank_names = banks, names
            self._recent, self._recent_owner = photos, [(r[1], r[2]) for r in recent]
            self._loaded_at = time.monotonic()
        log.info("image banks: %d hashes; %d recent photo hashes", len(names), len(recent))

    def check(
        self, keys: Sequence[PhotoKey], hashes: Sequence[PhotoHash]
    ) -> list[dict[str, float]]:
        """Scores for each photo; remembers the photos for later duplicate checks and saves
        their hashes to the database."""
        self.refresh()
        cfg = self.config
        out: list[dict[str, float]] = [{} for _ in hashes]
        usable = [i for i, h in enumerate(hashes) if h.quality >= cfg.min_quality]
        if not usable:
            self._remember(keys, hashes)
            return out
        queries = to_matrix([hashes[i].bytes for i in usable])
        with self._lock:
            banks, names = self._banks, self._bank_names
            recent, owners = self._recent, self._recent_owner
        for q, j, d in zip(*banks.search(queries, cfg.max_distance), strict=True):
            key = f"banks.{names[int(j)]}"
            scores = out[usable[int(q)]]
            scores[key] = max(scores.get(key, 0.0), similarity(int(d)))
        for q, j, d in zip(*recent.search(queries, cfg.max_distance), strict=True):
            photo = keys[usable[int(q)]]
            seller, listing = owners[int(j)]
            if listing == photo.listing_id or seller is None or seller == photo.seller_id:
                continue
            scores = out[usable[int(q)]]
            scores["duplicate.photo"] = max(scores.get("duplicate.photo", 0.0), similarity(int(d)))
            log.info(
                "duplicate photo: listing %s photo %d matches listing %s of seller %s (d=%d)",
                photo.listing_id, photo.photo_index, listing, seller, d,
            )  # fmt: skip
        self._remember(keys, hashes)
        return out

    def _remember(self, keys: Sequence[PhotoKey], hashes: Sequence[PhotoHash]) -> None:
        rows = [
            bank_store.PhotoHashRow(
                k.listing_id, k.photo_index, k.listing_version, k.seller_id, h.bytes, h.quality
            )
            for k, h in zip(keys, hashes, strict=True)
        ]
        bank_store.save_photo_hashes(self.engine, rows)
        good = [
            (k, h)
            for k, h in zip(keys, hashes, strict=True)
            if h.quality >= self.config.min_quality
        ]
        if good:
            with self._lock:
                self._recent.add(to_matrix([h.bytes for _, h in good]))
                self._recent_owner.extend((k.seller_id, k.listing_id) for k, _ in good)


def nearest_distances(
    index: HashIndex, queries: Sequence[bytes], max_distance: int
) -> list[int | None]:
    """Distance of each query's nearest indexed hash within `max_distance` (None = no match)."""
    best: list[int | None] = [None] * len(queries)
    if not queries:
        return best
    for q, _, d in zip(*index.search(to_matrix(list(queries)), max_distance), strict=True):
        cur = best[int(q)]
        best[int(q)] = int(d) if cur is None else min(cur, int(d))
    return best
