"""Fixtures of the hostile-input suite: a live console (uvicorn, migrated PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console_server import LiveConsole, live_console


@pytest.fixture()
def live(datasets_dir: Path, tmp_path: Path) -> Iterator[LiveConsole]:
    with live_console(datasets_dir, tmp_path) as console:
        yield console


@pytest.fixture(scope="module")
def photos(datasets_dir: Path) -> list[Path]:
    return sorted((datasets_dir / "listings-v1" / "train" / "fashion.dress").glob("*.jpg"))[:4]
