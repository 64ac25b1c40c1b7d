"""Shared fixtures: real PostgreSQL databases built by the Alembic migrations, real Redis,
a tiny real ONNX model, and the real photos in ../shared (never copied into the repo)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from modq.settings import Settings
from tests.modelkit import build_tiny_model
from tests.tiers import TIERS, UNIT, Guard, classify, skipped_by_unit_runs

# The server the tests create their throwaway databases on; `postgres` is the maintenance db.
PG_ADMIN_URL = os.environ.get(
    "MODQ_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("MODQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def database_url(prefix: str = "modq_test") -> str:
    """The URL of a database that does not exist yet (see `create_database`)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_database(prefix: str = "modq_test", *, url: str | None = None) -> str:
    """Create an empty database (a fresh name unless `url` names one) and return its URL."""
    url = url or database_url(prefix)
    name = make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url


def rename_database(url: str, new_url: str) -> None:
    """Give the database at `url` the name of `new_url` (atomic for other connections)."""
    old, new = make_url(url).database, make_url(new_url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{old}" RENAME TO "{new}"'))
    admin.dispose()


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    path = Settings().datasets_dir
    if not (path / "listings-v1").is_dir():
        pytest.fail(f"real photos not found under {path}; set MODQ_DATASETS_DIR")
    return path


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    """An empty folder for a test's photos (modules with shared photos override it)."""
    root = tmp_path / "photos"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database with every migration applied, dropped after the session."""
    from modq.store.database import migrate

    url = create_database()
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_TEST_URL


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique per test session, so parallel test runs never share queues."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The trained model committed in models/ (the worker's default)."""
    path = Settings().model_path
    if not path.is_file():
        pytest.fail(f"the shipped model {path} is missing: train it with `make model`")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def make_settings(
    pg_url: str,
    redis_url: str,
    tiny_model: Path,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Settings]:
    tmp_path = tmp_path_factory.mktemp("modq")

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": pg_url,
            "broker_url": redis_url,
            "model_path": tiny_model,
            "classifier_precision": "fp32",  # the tiny model has no int8 copy
            "data_dir": tmp_path / "data",
            "queue_new": f"test-{run_id}.new",
            "queue_backfill": f"test-{run_id}.backfill",
        }
        values.update(overrides)
        return Settings(**values)

    return _make


# ---- tiers (tests/tiers.py; docs/testing.md) ----------------------------------------------

_GUARD: Guard | None = None
_WHY = pytest.StashKey[str]()
_VIOLATIONS = pytest.StashKey[list[str]]()
_SLOW_UNIT_S = 2.0  # a unit test slower than this is named at the end of the run


def pytest_configure(config: pytest.Config) -> None:
    global _GUARD
    if _GUARD is None:
        ports = {5432, 6379}
        for url in (PG_ADMIN_URL, REDIS_TEST_URL):
            if (port := make_url(url).port) is not None:
                ports.add(port)
        try:
            datasets = Settings().datasets_dir
        except Exception:  # a bad MODQ_* variable: the tests that read settings will say so
            datasets = Path(os.environ.get("MODQ_DATASETS_DIR", "../shared/datasets"))
        _GUARD = Guard(ports, datasets)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `-m unit` (make test-fast) skips importing what cannot hold a unit test: torch alone
    # costs more than the rest of the tier's collection.
    if config.getoption("markexpr", "").strip() == UNIT and skipped_by_unit_runs(collection_path):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier, why = classify(item)
        item.stash[_WHY] = why
        if not any(m.name == tier for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str:
    counts = {tier: 0 for tier in TIERS}
    for item in items:
        for tier in TIERS:
            if item.get_closest_marker(tier):
                counts[tier] += 1
                break
    line = "tiers: " + ", ".join(f"{tier} {n}" for tier, n in counts.items())
    if not config.getoption("show_tiers"):
        return line
    rows = [f"{_tier(item):<11} {item.nodeid}  ({item.stash.get(_WHY, '?')})" for item in items]
    return "\n".join([*rows, line])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--show-tiers", action="store_true", help="list each test's tier and why (modq)"
    )


def _tier(item: pytest.Item) -> str:
    return next((t for t in TIERS if item.get_closest_marker(t)), "?")


def _guarded(item: pytest.Item) -> Iterator[None]:
    if _GUARD is None or _tier(item) != UNIT:
        yield
        return
    _GUARD.arm(item.nodeid)
    try:
        yield
    finally:
        item.stash[_VIOLATIONS] = _GUARD.disarm()


# Setup and call only: a unit item's teardown may also tear down module or session fixtures
# an earlier integration test set up, which is allowed to talk to its services.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    yield from _guarded(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield from _guarded(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    found = item.stash.get(_VIOLATIONS, [])
    if found and call.when in ("setup", "call"):
        item.stash[_VIOLATIONS] = []
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} is in the unit tier but:\n" + "\n".join(found)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    slow = [
        (r.duration, r.nodeid)
        for r in terminalreporter.getreports("passed")
        if r.when == "call" and "unit" in r.keywords and r.duration > _SLOW_UNIT_S
    ]
    if slow:
        terminalreporter.write_sep("-", f"unit tests over {_SLOW_UNIT_S:g} s (keep the tier fast)")
        for duration, nodeid in sorted(slow, reverse=True):
            terminalreporter.write_line(f"{duration:6.1f} s  {nodeid}")
