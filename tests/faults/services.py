"""Services the fault tests own and may break: a redis-server and a PostgreSQL cluster of their
own on free ports (never the shared 6379/5432), and modq worker processes.

Each is a child process stopped by its pid (or by `pg_ctl` for the cluster it created).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
import sqlalchemy as sa

from modq.settings import Settings
from tests.workerkit import WorkerProcess, child_pids, settings_env, worker_command

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
    """`probe()`'s first truthy value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


class RedisServer:
    """`redis-server` without persistence, as docker-compose used to run it; with
    `appendonly`, as it runs it now (AOF, fsync every second, in `log_dir`)."""

    def __init__(self, log_dir: Path, appendonly: bool = False) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.log_dir / f"redis-{self.port}.log").open("ab")
        persistence = ["--appendonly", "no"]
        if self.appendonly:
            persistence = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir",
                           str(self.log_dir), "--appendfilename", f"{self.port}.aof"]  # fmt: skip
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", *persistence, "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        poll(lambda: _answers(client), 10, "redis-server to start")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb as the `postgres` user, trust auth, fsync off),
    started and stopped with pg_ctl."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="modq-faults-pg-"))
        self.data = self.root / "data"
        shutil.chown(self.root, "postgres")
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync",
        )  # fmt: skip

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True,
            timeout=120,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "pg.log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
        )

    def create_database(self, name: str) -> str:
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_worker(settings: Settings, log_path: Path, *args: str) -> WorkerProcess:
    """A `modq worker` process, returned once it is ready."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            worker_command(*args), env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = WorkerProcess(proc, log_path)
    worker.wait_for(lambda: "ready." in worker.log(), 90, "the worker to start")
    return worker


def peak_rss_mb(worker: WorkerProcess) -> float:
    """The largest peak resident set (VmHWM, MiB) of the worker's processes: the worker itself
    or, under a supervisor (`--processes N`), each of its children. 0 once they have exited."""
    peak = 0.0
    for pid in (worker.proc.pid, *child_pids(worker.proc.pid)):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


def stop_worker(worker: WorkerProcess, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    """Signal the worker by pid and wait; SIGKILL if it outlives `timeout`."""
    if worker.proc.poll() is None:
        os.kill(worker.proc.pid, sig)
        try:
            worker.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
