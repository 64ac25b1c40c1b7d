"""What the pipeline needs from storage, as small typed interfaces (no SQLAlchemy here).

The pipeline and the detectors are handed objects that satisfy these Protocols; the SQL
implementations live beside this module (`modq.store.verdicts.SqlVerdictStore`,
`modq.store.banks.SqlBankStore`) and are put together by `open_stores`. Importing this module
never imports a database driver, so the pipeline can be tested and reasoned about without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from modq.domain.events import ListingEvent
from modq.domain.verdicts import RejectedEvent, Verdict


@dataclass(frozen=True)
class BankEntry:
    """One hash to add to an image bank, with its provenance."""

    hash: bytes
    quality: int
    source: str | None = None
    # As the list it came from names it (HMA/ThreatExchange content id, NCMEC id, ...).
    content_id: str | None = None
    note: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class BankHash:
    """One enabled hash of an enabled bank, as the matcher loads it."""

    hash: bytes
    bank: str
    content_id: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class PhotoHashRow:
    """The PDQ hash of one moderated photo, kept for the duplicate-photo check."""

    listing_id: str
    photo_index: int
    listing_version: int
    seller_id: str | None
    hash: bytes
    quality: int


@dataclass
class PhotoRows:
    """Photo hashes as columns: what an index segment is built from."""

    hashes: bytearray = field(default_factory=bytearray)  # 32 bytes a row
    listing_ids: list[str] = field(default_factory=list)
    seller_ids: list[str | None] = field(default_factory=list)
    photo_index: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)  # seen_at, seconds since the epoch
    # Every row with seq <= watermark has been read (or is outside what was asked for).
    watermark: int = 0

    def __len__(self) -> int:
        return len(self.seq)


class VerdictStore(Protocol):
    """Where a batch's verdicts and rejected events go, idempotently."""

    def save_batch(
        self,
        events: Sequence[ListingEvent],
        verdicts: Sequence[Verdict],
        rejected: Sequence[RejectedEvent] = (),
    ) -> list[int]: ...

    def record_rejected(self, rejected: Sequence[RejectedEvent]) -> None: ...


class BankStore(Protocol):
    """Image-bank hashes and photo hashes, as the matcher and its per-host index read them."""

    def load_bank_hashes(self, min_quality: int) -> tuple[int, list[BankHash]]:
        """The banks' version and every enabled hash of every enabled bank with quality >=
        `min_quality`."""
        ...

    def bank_version(self) -> int:
        """Moves with every bank edit (add, remove, enable, disable)."""
        ...

    def save_photo_hashes(self, rows: Sequence[PhotoHashRow]) -> list[int]:
        """Upserts the rows; returns the seq each was given."""
        ...

    def photo_rows(
        self, after: int | None, since: datetime, min_quality: int, limit: int = 200_000
    ) -> Iterator[PhotoRows]:
        """All rows of the window (after None) or those above seq `after`, in pages; the
        last page's watermark says how far they reach."""
        ...

    def photo_counter(self) -> int: ...

    def source_id(self) -> str: ...


@dataclass
class Stores:
    """The stores a worker process uses, and how to release their connections."""

    verdicts: VerdictStore
    banks: BankStore
    close: Callable[[], None] = field(default=lambda: None)
