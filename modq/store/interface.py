"""What the pipeline needs from storage, as small typed interfaces (no SQLAlchemy here).

The pipeline and the detectors are handed objects that satisfy these Protocols; the SQL
implementations live beside this module (`modq.store.verdicts.SqlVerdictStore`,
`modq.store.banks.SqlBankStore`) and are put together by `open_stores`. Importing this module
never imports a database driver, so the pipeline can be tested and reasoned about without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """Image-bank hashes and recent photo hashes, as the matcher loads and saves them."""

    def load_bank_hashes(self, min_quality: int) -> list[BankHash]:
        """Every enabled hash of every enabled bank with quality >= `min_quality`."""
        ...

    def load_recent_photo_hashes(
        self, since: datetime, min_quality: int
    ) -> list[tuple[bytes, str | None, str]]: ...

    def save_photo_hashes(self, rows: Sequence[PhotoHashRow]) -> None: ...


@dataclass
class Stores:
    """The stores a worker process uses, and how to release their connections."""

    verdicts: VerdictStore
    banks: BankStore
    close: Callable[[], None] = field(default=lambda: None)
