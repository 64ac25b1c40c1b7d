"""The secret that signs session cookies: never empty, never short, created atomically."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from modq.console.auth import MIN_SECRET_BYTES, console_secret
from modq.errors import ConfigError
from modq.settings import Settings


def test_short_or_empty_secret_in_the_environment_is_refused(tmp_path: Path) -> None:
    for secret in ("x", "s" * (MIN_SECRET_BYTES - 1)):
        with pytest.raises(ConfigError, match="at least 32"):
            console_secret(Settings(console_secret=secret, data_dir=tmp_path))
    ok = "s" * MIN_SECRET_BYTES
    assert console_secret(Settings(console_secret=ok, data_dir=tmp_path)) == ok


def test_an_empty_secret_file_is_refused_not_used_as_the_key(tmp_path: Path) -> None:
    # What a crash between creating and writing the file used to leave behind.
    (tmp_path / "console-secret").write_text("")
    with pytest.raises(ConfigError, match="delete it"):
        console_secret(Settings(data_dir=tmp_path))
    (tmp_path / "console-secret").write_text("short\n")
    with pytest.raises(ConfigError):
        console_secret(Settings(data_dir=tmp_path))


def test_the_generated_secret_is_private_long_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new")
    first = console_secret(settings)
    path = tmp_path / "new" / "console-secret"
    assert len(first.encode()) >= MIN_SECRET_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert console_secret(settings) == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["console-secret"]  # no temp files


def test_consoles_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    got: list[str] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        got.append(console_secret(settings))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1
    assert got[0] == (tmp_path / "console-secret").read_text()
