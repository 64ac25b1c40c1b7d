"""`modq health`, the health check the image and docker-compose.yml run for every service:
a worker's /healthz on its metrics port, the console's /healthz, `modq recover`'s heartbeat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from modq.settings import Settings
from tests.console_server import free_port, live_console
from tests.faults.services import poll
from tests.workerkit import running_worker, settings_env


def health(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modq", "health", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_health_is_its_healthz(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(metrics_port=port, metrics_host="127.0.0.1")
    with running_worker(settings, tmp_path / "w.log") as worker:
        poll(lambda: health(settings).returncode == 0, 30, "the worker's /healthz")
        assert "answered 200" in health(settings).stdout
    assert worker.proc.poll() is not None
    down = health(settings)
    assert down.returncode == 1 and "unhealthy:" in down.stderr, down


def test_console_health_needs_no_login_and_tells_nothing(
    datasets_dir: Path, tmp_path: Path
) -> None:
    with live_console(datasets_dir, tmp_path) as console:
        done = health(console.settings, "--url", f"{console.url}/healthz")
        assert done.returncode == 0, done
        with urllib.request.urlopen(f"{console.url}/healthz", timeout=5) as answer:
            assert json.loads(answer.read()) == {"database": "ok"}


def test_recover_heartbeat(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path / "data")
    missing = health(settings, "--heartbeat")
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "modq", "recover", "--every", "1s"],
        env=settings_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll(lambda: health(settings, "--heartbeat").returncode == 0, 60, "a recover pass")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    beat = settings.data_dir / "recover.heartbeat"
    old = time.time() - 600
    os.utime(beat, (old, old))
    stale = health(settings, "--heartbeat", "--max-age", "5m")
    assert stale.returncode == 1 and "over 5m" in stale.stderr, stale
