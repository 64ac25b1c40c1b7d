"""A real console for browser tests: a migrated PostgreSQL database, accounts, review jobs
on real photos, and uvicorn serving the app from a thread on a free 127.0.0.1 port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.engine import Engine

from modq.console.app import create_app
from modq.console.auth import add_user
from modq.settings import Settings
from modq.store.database import make_engine, migrate
from tests.conftest import create_database, drop_database

PASSWORD = "correct horse battery"
USERS = {"mia": "moderator", "max": "moderator", "lea": "lead"}


@dataclass
class LiveConsole:
    url: str
    engine: Engine
    settings: Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def live_console(datasets_dir: Path, tmp_path: Path, **overrides: Any) -> Iterator[LiveConsole]:
    """`overrides`: Settings fields (e.g. shorter sessions) on top of the test defaults."""
    url = create_database("modq_test_console")
    migrate(url)
    settings = Settings(
        database_url=url,
        data_dir=tmp_path / "data",
        image_roots=[str(datasets_dir)],
        console_secret="test-secret-" + url[-12:] + "-" + "s" * 24,
        **overrides,
    )
    engine = make_engine(url)
    for name, role in USERS.items():
        add_user(engine, name, role, PASSWORD)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to start")
        yield LiveConsole(f"http://127.0.0.1:{port}", engine, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
        drop_database(url)
