"""What `modq backfill` queues: the selection over `listings` (or an ids file), page by page.

- `listings` is walked in primary-key order one page at a time (keyset pagination:
  `listing_id > cursor … LIMIT n`, never OFFSET), so a table of millions streams in constant
  memory and every page costs the same; an ids file is sorted and walked the same way. Export
  files are read in `modq.backfill.export_file`.
- A listing whose current verdict was made by the deployed model *and* policy is "already
  current" and is not queued (its verdict key would not change) unless `force`.
- Each page comes back as a `Page`: message bodies ready to publish, its counts, and the cursor
  position after it, which `modq.store.checkpoints` checkpoints once the page is published.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modq.domain.contract import read_contract
from modq.domain.envelope import make_body
from modq.domain.events import as_utc, parse_event
from modq.domain.provenance import classifier_path
from modq.domain.verdicts import DECISIONS, RejectedEvent
from modq.errors import BackfillError, EventError
from modq.ingest.publish import known_categories
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.backfill import (
    ListingFilter,
    StoredListing,
    count_listings,
    listing_pages,
    listings_by_id,
)
from modq.store.checkpoints import Counts
from modq.store.database import Engine


@dataclass(frozen=True)
class Deployed:
    """What a worker would moderate with right now: the verdict key a re-moderation makes."""

    model_version: str
    policy_version: str
    categories: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployed:
        return cls(
            model_version=read_contract(classifier_path(settings)).model_version,
            policy_version=Policy.load(settings.policy_path).version,
            categories=known_categories(settings),
        )


@dataclass(frozen=True)
class Selection:
    """Which listings to re-moderate. Table filters combine with AND."""

    category: str | None = None
    # On the listing's `created_at` (the event's time), UTC; `until` is exclusive.
    since: datetime | None = None
    until: datetime | None = None
    decision: str | None = None  # of the current verdict
    stale: bool = False  # current verdict by another model or policy version, or none
    force: bool = False  # queue already-current listings too
    ids_file: Path | None = None  # one listing id per line
    from_file: Path | None = None  # an export of listing events: .jsonl or .csv

    def check(self) -> None:
        if self.decision is not None and self.decision not in DECISIONS:
            raise BackfillError(f"unknown decision {self.decision!r}: one of {DECISIONS}")
        if self.from_file is not None and (
            self.ids_file is not None or self.decision is not None or self.stale
        ):
            raise BackfillError(
                "an export file selects events, not stored listings: it combines with "
                "--category/--since/--until, not with --ids-file, --decision or --stale"
            )

    def spec(self, deployed: Deployed) -> dict[str, Any]:
        """The job's identity: filters, input file digests and the target versions. A new
        model or policy therefore makes a new job rather than finding the old one finished."""
        return {
            "category": self.category,
            "since": as_utc(self.since).isoformat() if self.since else None,
            "until": as_utc(self.until).isoformat() if self.until else None,
            "decision": self.decision,
            "stale": self.stale,
            "force": self.force,
            "ids_file_sha256": _digest(self.ids_file) if self.ids_file else None,
            "from_file_sha256": _digest(self.from_file) if self.from_file else None,
            "model_version": deployed.model_version,
            "policy_version": deployed.policy_version,
        }


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


@dataclass
class Page:
    """One page of the selection, ready to publish, and the checkpoint position after it."""

    bodies: list[dict[str, Any]]
    counts: Counts
    size: int  # progress units: rows, ids or lines consumed
    last_listing_id: str | None = None
    last_line: int | None = None
    rejected: list[RejectedEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def skip(self, problem: str, rejected: RejectedEvent) -> None:
        """A row that cannot be moderated: counted, reported, and recorded as a rejection."""
        self.counts.skipped += 1
        self.problems.append(problem)
        self.rejected.append(rejected)


# --- selection over the listings table ----------------------------------------------------------


def listing_filter(selection: Selection, deployed: Deployed) -> ListingFilter:
    stale = (deployed.model_version, deployed.policy_version) if selection.stale else None
    return ListingFilter(
        category=selection.category,
        since=selection.since,
        until=selection.until,
        decision=selection.decision,
        stale_against=stale,
    )


def is_current(
    deployed: Deployed,
    listing_version: int,
    verdict_version: int | None,
    model_version: str | None,
    policy_version: str | None,
) -> bool:
    return (
        verdict_version is not None
        and verdict_version >= listing_version
        and model_version == deployed.model_version
        and policy_version == deployed.policy_version
    )


def _row_page(
    rows: Sequence[StoredListing], deployed: Deployed, force: bool, size: int, last: str | None
) -> Page:
    page = Page(bodies=[], counts=Counts(), size=size, last_listing_id=last)
    for m in rows:
        if not force and is_current(
            deployed,
            m["listing_version"],
            m["verdict_listing_version"],
            m["model_version"],
            m["policy_version"],
        ):
            page.counts.already_current += 1
            continue
        raw = {
            "listing_id": m["listing_id"],
            "listing_version": m["listing_version"],
            "declared_category": m["declared_category"],
            "seller_id": m["seller_id"],
            "title": m["title"],
            "images": m["images"],
            "created_at": m["created_at"].isoformat(),
        }
        try:
            event = parse_event(raw, deployed.categories)
        except EventError as exc:
            # The stored listing cannot be moderated by what is deployed now (a category the
            # model dropped, say): recorded like any other event that cannot be moderated.
            page.skip(
                f"listing {m['listing_id']}: {exc}",
                RejectedEvent(
                    stage="submit",
                    reason=f"backfill: {exc}",
                    payload=json.dumps(raw, default=str),
                    listing_id=m["listing_id"],
                ),
            )
            continue
        page.bodies.append(make_body(event, "backfill"))
        page.counts.queued += 1
    return page


def table_pages(
    engine: Engine, selection: Selection, deployed: Deployed, cursor: str | None, page_size: int
) -> Iterator[Page]:
    for rows in listing_pages(engine, listing_filter(selection, deployed), cursor, page_size):
        last = rows[-1]["listing_id"]
        yield _row_page(rows, deployed, selection.force, len(rows), last)


def count_table(
    engine: Engine, selection: Selection, deployed: Deployed, cursor: str | None
) -> int:
    return count_listings(engine, listing_filter(selection, deployed), cursor)


# --- selection from an ids file -----------------------------------------------------------------


def read_ids(path: Path) -> list[str]:
    """Listing ids, one per line (blank lines and `#` comments ignored), unique and sorted: the
    order the cursor walks in."""
    ids = set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = line.strip()
            if text and not text.startswith("#"):
                ids.add(text)
    return sorted(ids)


def ids_after(ids: list[str], cursor: str | None) -> list[str]:
    return ids if cursor is None else [i for i in ids if i > cursor]


def ids_pages(
    engine: Engine,
    selection: Selection,
    deployed: Deployed,
    ids: list[str],
    page_size: int,
) -> Iterator[Page]:
    where = listing_filter(selection, deployed)
    for start in range(0, len(ids), page_size):
        chunk = ids[start : start + page_size]
        rows, known = listings_by_id(engine, where, chunk)
        page = _row_page(rows, deployed, selection.force, len(chunk), chunk[-1])
        unknown = [i for i in chunk if i not in known]
        page.counts.skipped += len(unknown)
        page.problems += [f"listing {i}: not in the listings table" for i in unknown]
        # Known but filtered out (--category, ...): not part of the selection.
        page.counts.not_selected += len(chunk) - len(rows) - len(unknown)
        yield page
