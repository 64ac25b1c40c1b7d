"""`modq demo` / `make demo`: sample listings from the shared photos, moderated end to end.

Uses MODQ_BROKER_URL / MODQ_DATABASE_URL when set, else the local Redis and PostgreSQL when
they answer (in a database of its own, `modq_demo`, created when missing: never the server's
`postgres` maintenance database), else an embedded fallback (SQLite file + Kombu's filesystem
broker in the data dir), and says which.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from modq.cli.context import cli_settings
from modq.cli.report import print_verdicts
from modq.errors import ConfigError
from modq.ingest.submit_file import submit_lines
from modq.settings import Settings, redacted
from modq.store.database import (
    connected,
    database_answers,
    ensure_database,
    migrate,
    sibling_database,
)
from modq.store.queries import query_verdicts

MISCATEGORISED_SHARE = 0.15
DEMO_DATABASE = "modq_demo"


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def choose_backends(settings: Settings, database: str = DEMO_DATABASE) -> Settings:
    chosen = settings.model_fields_set
    updates: dict[str, Any] = {}
    if "broker_url" not in chosen and not _redis_up(settings.broker_url):
        updates["broker_url"] = "filesystem://"
    if "database_url" not in chosen:
        if database_answers(sibling_database(settings.database_url, "postgres")):
            updates["database_url"] = sibling_database(settings.database_url, database)
            if ensure_database(updates["database_url"]):
                click.echo(f"created database {database}")
        else:
            updates["database_url"] = f"sqlite:///{settings.data_dir / 'modq-demo.sqlite'}"
            click.echo("no local PostgreSQL reachable: using an embedded SQLite file")
    if updates.get("broker_url") == "filesystem://":
        click.echo("no local Redis reachable: using Kombu's filesystem broker")
    return settings.model_copy(update=updates)


def sample_events(
    photos_dir: Path, n: int, run: str, seed: int = 7, *, bad_inputs: bool = True
) -> tuple[list[str], set[str]]:
    """JSON lines of `n` events and the ids of the deliberately mis-categorised ones; with
    `bad_inputs`, two more lines: a missing photo and an unknown category."""
    rng = random.Random(seed)
    by_category = {
        d.name: sorted(d.glob("*.jpg"))
        for d in sorted((photos_dir / "val").iterdir())
        if d.is_dir()
    }
    if not by_category:
        raise ConfigError(f"no photos under {photos_dir}/val (set MODQ_DATASETS_DIR)")
    categories = sorted(by_category)
    # Every photo appears in one listing only, as on a real marketplace: a photo shared by two
    # sellers is what the duplicate-photo check flags. Photos are drawn without replacement.
    unused = {c: rng.sample(photos, len(photos)) for c, photos in by_category.items()}
    lines, wrong = [], set()
    for i in range(n):
        left = [c for c in categories if unused[c]]
        if not left:
            raise ConfigError(f"only enough photos under {photos_dir}/val for {i} listings")
        true = rng.choice(left)
        photos = [unused[true].pop() for _ in range(min(len(unused[true]), rng.randint(1, 3)))]
        declared = true
        listing_id = f"demo-{run}-{i:03d}"
        if rng.random() < MISCATEGORISED_SHARE:
            declared = rng.choice([c for c in categories if c != true])
            wrong.add(listing_id)
        lines.append(json.dumps({
            "listing_id": listing_id,
            "declared_category": declared,
            "images": [str(p) for p in photos],
            "title": f"{true} for sale",
            # Derived from the photo, so a second demo run is the same seller again, not a
            # different seller reusing the photo.
            "seller_id": f"seller-{sum(map(ord, photos[0].name)) % 40 + 1}",
        }))  # fmt: skip
    if not bad_inputs:
        return lines, wrong
    # Two deliberately bad inputs: a photo that does not exist and an unknown category.
    lines.append(
        json.dumps(
            {
                "listing_id": f"demo-{run}-missing-photo",
                "declared_category": categories[0],
                "images": [str(photos_dir / "val" / "nope.jpg")],
            }
        )
    )
    lines.append(
        json.dumps(
            {
                "listing_id": f"demo-{run}-bad",
                "declared_category": "pets.dog",
                "images": [str(photos_dir / "val" / "x.jpg")],
            }
        )
    )
    return lines, wrong


def run_demo(settings: Settings, *, listings: int, timeout_s: float) -> None:
    settings = choose_backends(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    photos = settings.datasets_dir / "listings-v1"
    click.echo(
        f"broker {redacted(settings.broker_url)} | database {redacted(settings.database_url)}"
    )
    migrate(settings.database_url)

    run = uuid.uuid4().hex[:6]
    lines, wrong = sample_events(photos, listings, run)
    worker_settings = settings.model_copy(
        update={"image_roots": [str(settings.datasets_dir)], "log_level": "WARNING"}
    )
    env = {**os.environ, **worker_settings.to_env()}
    log_path = settings.data_dir / "demo-worker.log"
    with log_path.open("w") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "modq", "worker"], env=env, stdout=log_file, stderr=log_file
        )
    try:
        report = submit_lines(lines, worker_settings)
        for line_no, reason in report.rejected:
            click.echo(f"submit: line {line_no} rejected: {reason}")
        with connected(settings.database_url) as engine:
            rows = _wait(engine, f"demo-{run}-", report.queued, timeout_s, worker, log_path)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    print_verdicts(rows)
    _summary(rows, wrong)
    _console_login(settings)


DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"


def _console_login(settings: Settings) -> None:
    """Create the demo moderator and say how to open the review console on this database."""
    from modq.console.auth import add_user

    with connected(settings.database_url) as engine:
        add_user(engine, DEMO_USER, "moderator", DEMO_PASSWORD)
    url = f"http://{settings.console_host}:{settings.console_port}/"
    click.echo(
        "review console: run\n"
        f"  MODQ_DATABASE_URL='{redacted(settings.database_url)}' "
        f"MODQ_DATA_DIR='{settings.data_dir}' "
        f"MODQ_IMAGE_ROOTS='{settings.datasets_dir}' modq console\n"
        f"then open {url} and log in as {DEMO_USER} / {DEMO_PASSWORD} (a moderator)"
    )


def _wait(
    engine: Any,
    prefix: str,
    expected: int,
    timeout_s: float,
    worker: subprocess.Popen[bytes],
    log_path: Path,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    with tqdm(total=expected, desc="verdicts", unit="listing") as bar:
        while time.monotonic() < deadline:
            rows = [
                r for r in query_verdicts(engine, limit=0) if r["listing_id"].startswith(prefix)
            ]
            bar.update(len(rows) - bar.n)
            if len(rows) >= expected:
                return sorted(rows, key=lambda r: r["listing_id"])
            if worker.poll() is not None:
                raise ConfigError(
                    f"the worker exited ({worker.returncode}); see {log_path}:\n"
                    + log_path.read_text()[-2000:]
                )
            time.sleep(0.5)
    raise ConfigError(
        f"only {len(rows)}/{expected} verdicts after {timeout_s:.0f}s; see {log_path}"
    )


def _summary(rows: list[dict[str, Any]], wrong: set[str]) -> None:
    decisions = Counter(r["decision"] for r in rows)
    flagged = [r for r in rows if r["listing_id"] in wrong and r["decision"] != "approve"]
    clean = [r for r in rows if r["listing_id"] not in wrong and "missing" not in r["listing_id"]]
    clean_ok = [r for r in clean if r["decision"] == "approve"]
    click.echo(
        f"summary: {dict(decisions)}; mis-categorised flagged {len(flagged)}/{len(wrong)}; "
        f"correct listings approved {len(clean_ok)}/{len(clean)}"
    )


@click.command()
@click.option("--listings", type=int, default=100, show_default=True)
@click.option("--timeout", type=float, default=600, show_default=True)
def demo(listings: int, timeout: float) -> None:
    """Moderate sample listings built from the shared photos end to end and print verdicts."""
    run_demo(cli_settings(), listings=listings, timeout_s=timeout)
