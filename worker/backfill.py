"""`modq backfill`: moderate old listings again on the backfill queue, bounded and resumable.

- Selection walks `listings` in primary-key order one page at a time (keyset pagination:
  `listing_id > cursor … LIMIT n`, never OFFSET), so a table of millions streams in constant
  memory and every page costs the same; an ids file is walked the same way; an export file of
  events (JSON lines or CSV) brings listings modq has never seen.
- A listing whose current verdict was made by the deployed model *and* policy is "already
  current" and is not queued (its verdict key would not change) unless `force`.
- Before publishing a page the command waits until the backfill queue plus that page fits under
  `backfill_high_water`, so Redis holds a bounded number of backfill messages however large
  the selection; workers set the pace.
- The checkpoint is a row of `backfill_jobs`: the cursor and the counts advance in one
  transaction right after each page is published. A kill between publish and commit re-publishes
  that one page on restart, so queueing is at-least-once with at most one page queued twice;
  verdicts stay exactly-once because the worker upserts on (listing, version, model, policy).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm

from worker.database import as_utc, clean_text, unavailable
from worker.errors import BackfillError, EventError
from worker.events import ListingEvent, parse_event
from worker.infer import read_contract
from worker.messages import RejectedEvent
from worker.policy import Policy
from worker.publish import known_categories, message_body, publish_bodies, queue_size
from worker.schema import DECISIONS, backfill_jobs, listings, rejected_events, verdicts
from worker.settings import Settings

log = logging.getLogger(__name__)

PAGE_SIZE = 500
POLL_S = 0.5
# Reasons kept in the report for the terminal; every one is also counted (and, for events,
# recorded in rejected_events).
MAX_PROBLEMS = 20


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


def default_job_name(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "backfill-" + hashlib.sha256(text.encode()).hexdigest()[:12]


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
class BackfillReport:
    job: str
    counts: Counts  # this job's totals, earlier runs included
    this_run: Counts
    resumed: bool = False
    already_finished: bool = False
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        text = f"queued {c.queued}, skipped {c.skipped}, already current {c.already_current}"
        if c.not_selected:
            text += f", not selected {c.not_selected}"
        return text


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


@dataclass
class _Job:
    counts: Counts
    last_listing_id: str | None
    last_line: int | None
    finished: bool
    resumed: bool


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


def _is_current(
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
        if not force and _is_current(
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
            page.counts.skipped += 1
            page.problems.append(f"listing {m['listing_id']}: {exc}")
            page.rejected.append(
                RejectedEvent(
                    stage="submit",
                    reason=f"backfill: {exc}",
                    payload=json.dumps(raw, default=str),
                    listing_id=m["listing_id"],
                )
            )
            continue
        page.bodies.append(message_body(event, "backfill"))
        page.counts.queued += 1
    return page


def _table_pages(
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


def _count_table(
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


def _ids_after(ids: list[str], cursor: str | None) -> list[str]:
    return ids if cursor is None else [i for i in ids if i > cursor]


def _ids_pages(
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


# --- selection from an export file ----------------------------------------------------------------


def _csv_record(row: dict[Any, Any]) -> dict[str, Any]:
    """A CSV row as an event dict: empty cells are absent, `images` is a JSON array or refs
    separated by `|`."""
    record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    if None in row:
        record["_extra_cells"] = row[None]  # more cells than header columns: fails validation
    images = record.get("images")
    if isinstance(images, str):
        text = images.strip()
        record["images"] = json.loads(text) if text.startswith("[") else text.split("|")
    for name in ("listing_version", "schema_version"):
        value = record.get(name)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            record[name] = int(value)
    return record


def _file_lines(path: Path) -> Iterator[tuple[int, str | dict[str, Any], str]]:
    """(line number, raw event, raw text) for every non-blank event in the file."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            line_no = reader.line_num
            for row in reader:
                start, line_no = line_no + 1, reader.line_num
                raw: str | dict[str, Any]
                try:
                    raw = _csv_record(row)
                except json.JSONDecodeError:
                    raw = json.dumps(row)  # images cell is not a JSON array: parse fails below
                yield start, raw, json.dumps(row, ensure_ascii=False)
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                yield line_no, line, line.rstrip("\n")


def _count_lines(path: Path, after: int | None) -> int:
    return sum(1 for n, _, _ in _file_lines(path) if after is None or n > after)


def _in_window(event: ListingEvent, selection: Selection) -> bool:
    if selection.category is not None and event.declared_category != selection.category:
        return False
    created = as_utc(event.created_at)
    if selection.since is not None and created < as_utc(selection.since):
        return False
    return not (selection.until is not None and created >= as_utc(selection.until))


def _file_pages(
    engine: Engine, selection: Selection, deployed: Deployed, after: int | None, page_size: int
) -> Iterator[Page]:
    assert selection.from_file is not None
    name = selection.from_file.name
    chunk: list[tuple[int, str | dict[str, Any], str]] = []
    for item in _file_lines(selection.from_file):
        if after is not None and item[0] <= after:
            continue
        chunk.append(item)
        if len(chunk) >= page_size:
            yield _file_page(engine, selection, deployed, chunk, name)
            chunk = []
    if chunk:
        yield _file_page(engine, selection, deployed, chunk, name)


def _file_page(
    engine: Engine,
    selection: Selection,
    deployed: Deployed,
    chunk: list[tuple[int, str | dict[str, Any], str]],
    name: str,
) -> Page:
    page = Page(bodies=[], counts=Counts(), size=len(chunk), last_line=chunk[-1][0])
    events = []
    for line_no, raw, text in chunk:
        try:
            event = parse_event(raw, deployed.categories)
        except EventError as exc:
            page.counts.skipped += 1
            page.problems.append(f"{name} line {line_no}: {exc}")
            page.rejected.append(
                RejectedEvent(
                    stage="submit", reason=f"backfill {name} line {line_no}: {exc}", payload=text
                )
            )
            continue
        if _in_window(event, selection):
            events.append(event)
        else:
            page.counts.not_selected += 1
    current: dict[str, tuple[int, str, str]] = {}
    if events and not selection.force:
        query = (
            sa.select(
                verdicts.c.listing_id,
                verdicts.c.listing_version,
                verdicts.c.model_version,
                verdicts.c.policy_version,
            )
            .select_from(listings.join(verdicts, verdicts.c.id == listings.c.current_verdict_id))
            .where(listings.c.listing_id.in_({e.listing_id for e in events}))
        )
        with unavailable("reading current verdicts"), engine.connect() as conn:
            current = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(query)}
    for event in events:
        seen = current.get(event.listing_id)
        if seen is not None and _is_current(deployed, event.listing_version, *seen):
            page.counts.already_current += 1
            continue
        page.bodies.append(message_body(event, "backfill"))
        page.counts.queued += 1
    return page


# --- the checkpoint -----------------------------------------------------------------------------


@contextmanager
def _exclusive(engine: Engine, name: str) -> Iterator[None]:
    """One running command per job: a PostgreSQL session advisory lock, released when the
    command ends or its connection drops (a killed command frees it at once)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"modq-backfill:{name}".encode()).digest()[:8], "big")
    key -= 1 << 63  # into bigint range
    with unavailable("locking the backfill job"), engine.connect() as conn:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        conn.commit()  # the lock is the session's: no transaction left idle while we run
        if not got:
            raise BackfillError(f"backfill job {name!r} is already running in another process")
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except sa.exc.SQLAlchemyError:
                # The connection is gone, and the lock with it; keep the original error.
                conn.invalidate()


def _load_job(
    conn: Connection, name: str, spec: dict[str, Any], restart: bool, write: bool
) -> _Job:
    row = conn.execute(sa.select(backfill_jobs).where(backfill_jobs.c.name == name)).first()
    if row is not None and not restart:
        stored = row._mapping
        if stored["selection"] != spec:
            raise BackfillError(
                f"backfill job {name!r} was started with another selection "
                f"({json.dumps(stored['selection'], sort_keys=True)}); "
                "use --restart to start it over with this one, or another --job name"
            )
        counts = Counts(
            stored["queued"], stored["skipped"], stored["already_current"], stored["not_selected"]
        )
        return _Job(
            counts,
            stored["last_listing_id"],
            stored["last_line"],
            finished=stored["finished_at"] is not None,
            resumed=counts.done > 0,
        )
    if write:
        fresh = {
            "selection": spec,
            "last_listing_id": None,
            "last_line": None,
            "queued": 0,
            "skipped": 0,
            "already_current": 0,
            "not_selected": 0,
            "finished_at": None,
        }
        if row is None:
            conn.execute(sa.insert(backfill_jobs).values(name=name, **fresh))
        else:
            conn.execute(
                sa.update(backfill_jobs)
                .where(backfill_jobs.c.name == name)
                .values(**fresh, started_at=sa.func.now(), updated_at=sa.func.now())
            )
    return _Job(Counts(), None, None, finished=False, resumed=False)


def _advance(engine: Engine, name: str, page: Page) -> None:
    """Move the cursor past a published page, in the same transaction as its counts and its
    rejected events: after a kill, either all of them moved or none did."""
    c = page.counts
    values: dict[str, Any] = {
        "queued": backfill_jobs.c.queued + c.queued,
        "skipped": backfill_jobs.c.skipped + c.skipped,
        "already_current": backfill_jobs.c.already_current + c.already_current,
        "not_selected": backfill_jobs.c.not_selected + c.not_selected,
        "updated_at": sa.func.now(),
    }
    if page.last_listing_id is not None:
        values["last_listing_id"] = page.last_listing_id
    if page.last_line is not None:
        values["last_line"] = page.last_line
    with unavailable("advancing the backfill checkpoint"), engine.begin() as conn:
        if page.rejected:
            conn.execute(
                sa.insert(rejected_events),
                [
                    {
                        "stage": r.stage,
                        "reason": clean_text(r.reason),
                        "payload": clean_text(r.payload),
                        "listing_id": clean_text(r.listing_id),
                    }
                    for r in page.rejected
                ],
            )
        conn.execute(sa.update(backfill_jobs).where(backfill_jobs.c.name == name).values(**values))


def _finish(engine: Engine, name: str) -> None:
    with unavailable("finishing the backfill job"), engine.begin() as conn:
        conn.execute(
            sa.update(backfill_jobs)
            .where(backfill_jobs.c.name == name)
            .values(finished_at=sa.func.now(), updated_at=sa.func.now())
        )


def job_status(engine: Engine, name: str) -> dict[str, Any] | None:
    """The checkpoint row of job `name`, or None."""
    with unavailable("reading the backfill job"), engine.connect() as conn:
        row = conn.execute(sa.select(backfill_jobs).where(backfill_jobs.c.name == name)).first()
    return dict(row._mapping) if row is not None else None


# --- the run ----------------------------------------------------------------------------------


def _wait_for_room(settings: Settings, incoming: int, high_water: int, bar: tqdm[Any]) -> None:
    """Block until `incoming` more messages keep the backfill queue at or under the mark."""
    waiting = False
    while True:
        depth = queue_size(settings, settings.queue_backfill)
        if depth + incoming <= high_water:
            if waiting:
                bar.set_postfix_str("", refresh=True)
            return
        if not waiting:
            log.info("backfill queue at %d, high-water %d: waiting for workers", depth, high_water)
        waiting = True
        bar.set_postfix_str(
            f"waiting for workers: queue at {depth:,} + page {incoming:,} > high-water "
            f"{high_water:,}",
            refresh=True,
        )
        time.sleep(POLL_S)


def run_backfill(
    engine: Engine,
    settings: Settings,
    selection: Selection,
    *,
    job: str | None = None,
    restart: bool = False,
    dry_run: bool = False,
    page_size: int = PAGE_SIZE,
    high_water: int | None = None,
    progress: bool = True,
) -> BackfillReport:
    """Queue the selection on `settings.queue_backfill`, resuming job `job` (default: a name
    derived from the selection and the deployed versions) where it stopped.

    `dry_run` walks what is left of the selection and counts, publishing nothing and leaving the
    checkpoint alone.
    """
    selection.check()
    high_water = high_water or settings.backfill_high_water
    if page_size < 1:
        raise BackfillError("page size must be at least 1")
    # A page that does not fit under the mark could never be published.
    page_size = min(page_size, high_water)
    deployed = Deployed.from_settings(settings)
    spec = selection.spec(deployed)
    name = job or default_job_name(spec)

    with nullcontext() if dry_run else _exclusive(engine, name):
        with unavailable("starting the backfill job"), engine.begin() as conn:
            state = _load_job(conn, name, spec, restart, write=not dry_run)
        report = BackfillReport(
            job=name, counts=state.counts, this_run=Counts(), resumed=state.resumed, dry_run=dry_run
        )
        if state.finished:
            report.already_finished = True
            return report

        pages: Iterator[Page]
        if selection.from_file is not None:
            remaining = _count_lines(selection.from_file, state.last_line)
            pages = _file_pages(engine, selection, deployed, state.last_line, page_size)
        elif selection.ids_file is not None:
            ids = _ids_after(read_ids(selection.ids_file), state.last_listing_id)
            remaining = len(ids)
            pages = _ids_pages(engine, selection, deployed, ids, page_size)
        else:
            remaining = _count_table(engine, selection, deployed, state.last_listing_id)
            pages = _table_pages(engine, selection, deployed, state.last_listing_id, page_size)

        with tqdm(
            total=state.counts.done + remaining,
            initial=state.counts.done,
            desc=f"{'dry run ' if dry_run else ''}{name}",
            unit=" listings",
            disable=not progress,
            mininterval=0.5,
            dynamic_ncols=True,
        ) as bar:
            for page in pages:
                if not dry_run:
                    if page.bodies:
                        _wait_for_room(settings, len(page.bodies), high_water, bar)
                        publish_bodies(
                            page.bodies, settings, queue=settings.queue_backfill, batch=True
                        )
                    _advance(engine, name, page)
                report.counts.add(page.counts)
                report.this_run.add(page.counts)
                room = MAX_PROBLEMS - len(report.problems)
                report.problems += page.problems[: max(room, 0)]
                bar.update(page.size)
        if not dry_run:
            _finish(engine, name)
    return report
