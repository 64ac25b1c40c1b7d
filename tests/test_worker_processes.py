"""The supervisor behind `modq worker --processes N`, with stand-in children (fast); the real
worker processes under it are killed mid-batch in tests/faults/test_faults.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from modq.cli.main import main
from modq.settings import Settings
from tests.faults.services import poll
from tests.workerkit import child_pids, is_running, settings_env, worker_command

# A child that, like Celery's warm shutdown, exits 0 on SIGTERM and says it got it; it says
# "ready" once its handler is installed, which the tests wait for before they signal (a child
# signalled earlier dies of the signal, as a real worker that is still importing does).
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    def stop(signum, frame):
        print("child got", signal.Signals(signum).name, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("ready", os.getpid(), flush=True)
    time.sleep(600)
    """
)


def _ready(log: Path) -> set[int]:
    return {
        int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("ready")
    }


def _supervisor(tmp_path: Path, children: int) -> tuple[subprocess.Popen[bytes], Path]:
    script = (
        "import sys\n"
        "from modq.tasks.supervisor import Supervisor\n"
        f"sys.exit(Supervisor([[sys.executable, '-c', {CHILD!r}]] * {children}, {{}}).run())\n"
    )
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc, log


def test_a_dead_child_is_started_again_and_sigterm_stops_every_child(tmp_path: Path) -> None:
    proc, log = _supervisor(tmp_path, 2)
    try:
        first = poll(lambda: len(k := child_pids(proc.pid)) == 2 and k, 30, "two children")
        os.kill(first[0], signal.SIGKILL)
        # Died young: it comes back after the first backoff step (1 s), the other untouched.
        again = poll(
            lambda: len(k := child_pids(proc.pid)) == 2 and first[0] not in k and k,
            30,
            "the killed child to be started again",
        )
        assert first[1] in again
        poll(lambda: set(again) <= _ready(log), 30, "both children to install their handlers")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not any(is_running(pid) for pid in again)
        assert log.read_text().count("child got SIGTERM") == 2  # once each, not twice
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_supervisor_takes_its_children_along(tmp_path: Path) -> None:
    proc, _ = _supervisor(tmp_path, 2)
    kids = poll(lambda: len(k := child_pids(proc.pid)) == 2 and k, 30, "two children")
    proc.kill()
    proc.wait()
    poll(lambda: not any(is_running(pid) for pid in kids), 30, "the children to exit")


# A child still starting (importing, loading its model) when the stop comes: no handler yet.
SLOW_CHILD = "import time; print('starting', flush=True); time.sleep(600)"


def test_a_child_signalled_while_it_starts_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM before a child installed its handler kills it with SIGTERM: it held no
    listing, so the supervisor reports a clean stop (0), not 143."""
    script = (
        "import sys\n"
        "from modq.tasks.supervisor import Supervisor\n"
        f"sys.exit(Supervisor([[sys.executable, '-c', {SLOW_CHILD!r}]] * 2, {{}}).run())\n"
    )
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=out)
    try:
        poll(lambda: log.read_text().count("starting") == 2, 30, "two children starting")
        kids = child_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert not any(is_running(pid) for pid in kids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_real_worker_signalled_while_it_starts(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The same with real `modq worker` children, signalled as soon as they exist (before
    they load the model or connect): the supervisor exits 0 promptly and leaves no child."""
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            worker_command("--processes", "2"),
            env=settings_env(make_settings()),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        kids = poll(lambda: len(k := child_pids(proc.pid)) == 2 and k, 30, "two children")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        poll(lambda: not any(is_running(pid) for pid in kids), 30, "the children to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_counts_are_checked() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["worker", "--processes", "0"])
    assert result.exit_code == 2 and "neither 'auto' nor a number >= 1" in result.output
    result = runner.invoke(main, ["worker", "--processes", "two"])
    assert result.exit_code == 2 and "neither 'auto' nor a number >= 1" in result.output
