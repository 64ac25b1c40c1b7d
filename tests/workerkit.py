"""Running a real `modq worker` process in tests, and waiting on it with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from modq.settings import Settings

T = TypeVar("T")


def worker_command(*args: str) -> list[str]:
    """`modq worker` with `args`; one process unless `args` ask for more (a test that kills
    "the worker" by pid kills the process that consumes, not a supervisor)."""
    processes = [] if {"--processes", "-p"} & set(args) else ["--processes", "1"]
    return [sys.executable, "-m", "modq", "worker", "--loglevel", "INFO", *processes, *args]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build exactly `settings`."""
    return {**os.environ, **settings.to_env()}


def child_pids(parent: int) -> list[int]:
    """Live (not zombie) processes whose parent is `parent`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        if int(ppid) == parent and state != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll `probe` until it returns a truthy value; fail early if the worker died."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if not self.alive():
                raise AssertionError(
                    f"worker exited while waiting for {what}:\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-3000:]}")
            time.sleep(0.1)


@contextmanager
def running_worker(settings: Settings, log_path: Path, *args: str) -> Iterator[WorkerProcess]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            worker_command(*args),
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(proc, log_path)
    try:
        worker.wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
        yield worker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
