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

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.events import parse_event
from modq.domain.verdicts import RejectedEvent
from modq.errors import BackfillError, EventError
from modq.ingest.publish import known_categories, message_body
from modq.pipeline.infer import read_contract
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.database import as_utc, unavailable
from modq.store.schema import DECISIONS, listings, verdicts


@dataclass(frozen=True)
class Deployed:
    """What a worker would moderate with right now: the verdict key a re-moderation makes."""

    model_version: str
    policy_version: str
    categories: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployed:
        return cls(
            model_version=read_contract(settings.model_path).model_version,
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
class Counts:
    queued: int = 0
    skipped: int = 0  # could not be queued: invalid event or stored row, unknown listing id
    already_current: int = 0
    not_selected: int = 0  # export-file lines outside --category/--since/--until

    @property
    def done(self) -> int:
        return self.queued + self.skipped + self.already_current + self.not_selected

    def add(self, other: Counts) -> None:
        self.queued += other.queued
        self.skipped += other.skipped
        self.already_current += other.already_current
        self.not_selected += other.not_selected


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


def _current_verdict() -> sa.FromClause:
    return listings.outerjoin(verdicts, verdicts.c.id == listings.c.current_verdict_id)


def _where(selection: Selection, deployed: Deployed) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if selection.category is not None:
        conds.append(listings.c.declared_category == selection.category)
    if selection.since is not None:
        conds.append(listings.c.created_at >= as_utc(selection.since))
    if selection.until is not None:
        conds.append(listings.c.created_at < as_utc(selection.until))
    if selection.decision is not None:
        conds.append(verdicts.c.decision == selection.decision)
    if selection.stale:
        conds.append(
            sa.or_(
                verdicts.c.id.is_(None),
                verdicts.c.model_version != deployed.model_version,
                verdicts.c.policy_version != deployed.policy_version,
                verdicts.c.listing_version < listings.c.listing_version,
            )
        )
    return conds


_PAGE_COLUMNS = (
    listings.c.listing_id,
    listings.c.listing_version,
    listings.c.declared_category,
    listings.c.seller_id,
    listings.c.title,
    listings.c.images,
    listings.c.created_at,
    verdicts.c.listing_version.label("verdict_listing_version"),
    verdicts.c.model_version,
    verdicts.c.policy_version,
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
    rows: Sequence[Any], deployed: Deployed, force: bool, size: int, last: str | None
) -> Page:
    page = Page(bodies=[], counts=Counts(), size=size, last_listing_id=last)
    for row in rows:
        m = row._mapping
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
            "created_at": as_utc(m["created_at"]).isoformat(),
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
        page.bodies.append(message_body(event, "backfill"))
        page.counts.queued += 1
    return page


def table_pages(
    engine: Engine, selection: Selection, deployed: Deployed, cursor: str | None, page_size: int
) -> Iterator[Page]:
    base = sa.select(*_PAGE_COLUMNS).select_from(_current_verdict())
    base = base.where(*_where(selection, deployed)).order_by(listings.c.listing_id)
    while True:
        query = base if cursor is None else base.where(listings.c.listing_id > cursor)
        with unavailable("reading the backfill selection"), engine.connect() as conn:
            rows = conn.execute(query.limit(page_size)).all()
        if not rows:
            return
        cursor = rows[-1].listing_id
        yield _row_page(rows, deployed, selection.force, len(rows), cursor)


def count_table(
    engine: Engine, selection: Selection, deployed: Deployed, cursor: str | None
) -> int:
    query = sa.select(sa.func.count()).select_from(_current_verdict())
    query = query.where(*_where(selection, deployed))
    if cursor is not None:
        query = query.where(listings.c.listing_id > cursor)
    with unavailable("counting the backfill selection"), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


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
    base = sa.select(*_PAGE_COLUMNS).select_from(_current_verdict())
    base = base.where(*_where(selection, deployed)).order_by(listings.c.listing_id)
    for start in range(0, len(ids), page_size):
        chunk = ids[start : start + page_size]
        with unavailable("reading the backfill selection"), engine.connect() as conn:
            rows = conn.execute(base.where(listings.c.listing_id.in_(chunk))).all()
            known = set(
                conn.execute(
                    sa.select(listings.c.listing_id).where(listings.c.listing_id.in_(chunk))
                ).scalars()
            )
        page = _row_page(rows, deployed, selection.force, len(chunk), chunk[-1])
        unknown = [i for i in chunk if i not in known]
        page.counts.skipped += len(unknown)
        page.problems += [f"listing {i}: not in the listings table" for i in unknown]
        # Known but filtered out (--category, ...): not part of the selection.
        page.counts.not_selected += len(chunk) - len(rows) - len(unknown)
        yield page
