"""Hostile lines among good ones: `modq submit` accepts every good line and records every
bad one as a rejection with its line number, never a traceback and never a lost line; the
worker, fed the same hostile ids directly, rejects them alone and moderates the rest."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner

from modq.cli.main import main
from modq.domain.envelope import make_body
from modq.domain.events import ListingEvent
from modq.ingest.publish import publish_bodies
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.queries import list_rejected, query_verdicts
from modq.store.schema import intake, rejected_events
from tests.photokit import colour_jpeg
from tests.workerkit import running_worker, settings_env


@pytest.fixture
def settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Settings]:
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        image_roots=[str(tmp_path)],
        detectors=[],
        batch_interval_s=0.2,
        queue_new=f"sec-{suffix}.new",
        queue_backfill=f"sec-{suffix}.backfill",
    )
    yield settings
    redis.Redis.from_url(settings.broker_url).delete(settings.queue_new, settings.queue_backfill)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Any]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


def good(run: str, name: str, photo: str = "hat.jpg") -> bytes:
    event = {"listing_id": f"{run}-{name}", "declared_category": "fashion.hat", "images": [photo]}
    return json.dumps(event).encode()


def hostile(run: str) -> dict[str, bytes]:
    """One line per attack, each carrying `run` so its rejection can be found."""
    base = f'{{"listing_id": "{run}-%s", "declared_category": "fashion.hat", "images": ["a.jpg"]'

    def with_id(listing_id: str) -> bytes:
        return json.dumps({"listing_id": listing_id, "declared_category": "fashion.hat",
                           "images": [f"{run}.jpg"]}).encode()  # fmt: skip

    def line(name: str, rest: bytes) -> bytes:
        return (base % name).encode() + rest

    return {
        "invalid UTF-8": line("utf8", b', "title": "\xff\xfe\x80"}'),
        "nested 100,000 deep": line("deep", b', "title": ' + b"[" * 100_000),
        "version 10**30": line("ver", b', "listing_version": 1' + b"0" * 30 + b"}"),
        "lone surrogate": line("sur", b', "title": "\\ud800"}'),
        "NUL in seller_id": line("nulseller", b', "seller_id": "s\\u0000"}'),
        "NUL in listing_id": with_id(f"{run}-\x00"),
        "slash in id": with_id(f"{run}/x"),
        "query in id": with_id(f"{run}?m=Call+555"),
        "dot-dot id": with_id(".."),
        "10 MB line": line("big", b', "title": "' + b"x" * (10 << 20) + b'"}'),
        "BOM": b"\xef\xbb\xbf" + good(run, "bom"),
        "NUL byte raw": line("rawnul", b"\x00}"),
        "not an object": f'["{run}"]'.encode(),
    }


def test_hostile_lines_cost_only_themselves(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    attacks = hostile(run)
    lines = [good(run, f"a{i}") for i in range(1500)]
    bad_at = {}
    for what, line in attacks.items():
        lines.append(line)
        bad_at[len(lines)] = what
    lines += [good(run, f"z{i}") for i in range(10)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = CliRunner().invoke(main, ["submit", str(path)], env=settings_env(settings))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1  # some lines were rejected
    assert f"queued 1510, rejected {len(attacks)}" in result.output

    with engine.connect() as conn:
        accepted = conn.execute(
            sa.select(sa.func.count()).where(intake.c.listing_id.startswith(f"{run}-"))
        ).scalar_one()
        reasons = [
            r.reason
            for r in conn.execute(
                sa.select(rejected_events.c.reason).where(
                    rejected_events.c.payload.contains(run), rejected_events.c.stage == "submit"
                )
            )
        ]
    with engine.begin() as conn:  # no worker here: close them, as their outcomes would
        conn.execute(
            sa.update(intake)
            .where(intake.c.listing_id.startswith(f"{run}-"))
            .values(done_at=sa.func.now())
        )
    assert accepted == 1510  # every good line, before and after the bad ones
    numbered = {int(r.split(":", 1)[0].removeprefix("line ")) for r in reasons}
    assert numbered == set(bad_at), {bad_at[n] for n in set(bad_at) - numbered}


def test_the_worker_rejects_hostile_ids_alone(
    settings: Settings, engine: Any, tmp_path: Path
) -> None:
    """Bodies published straight to the queue (not through submit): the batch of 26 is not
    re-run one by one into internal errors; the two bad ones are rejected, 24 moderated."""
    (tmp_path / "hat.jpg").write_bytes(colour_jpeg("fashion.hat"))
    run = uuid.uuid4().hex[:8]
    photo = str(tmp_path / "hat.jpg")
    events = [
        ListingEvent(listing_id=f"{run}-{i}", declared_category="fashion.hat", images=[photo])
        for i in range(24)
    ]
    bodies = [make_body(e, "new") for e in events]
    for bad in ({"seller_id": "s\x00"}, {"listing_id": f"{run}-\x00"}):
        event = events[0].to_message() | {"listing_id": f"{run}-bad"} | bad
        bodies.insert(12, {"event": event, "source": "new"})
    with running_worker(settings, tmp_path / "worker.log") as worker:
        publish_bodies(bodies, settings, queue=settings.queue_new)

        def outcomes() -> tuple[list[Any], list[Any]] | None:
            verdicts = [
                v for v in query_verdicts(engine, limit=0) if v["listing_id"].startswith(run)
            ]
            rejected = [r for r in list_rejected(engine, limit=0) if run in r["payload"]]
            return (verdicts, rejected) if len(verdicts) >= 24 and len(rejected) >= 2 else None

        verdicts, rejected = worker.wait_for(outcomes, 60, "24 verdicts and 2 rejections")
    assert len(verdicts) == 24 and len(rejected) == 2
    assert all(r["stage"] == "worker" and "ids are" in r["reason"] for r in rejected)
    assert "internal_error" not in json.dumps([v["reasons"] for v in verdicts])
