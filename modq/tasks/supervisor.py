"""`modq worker --processes N`: N worker processes on one machine, kept running.

A CPU worker scales with processes, not threads: its Python threads share one GIL, and two
processes with one ONNX thread each moderated 1.14-1.41x what one process did using both
cores (docs/performance.md#scaling). So on a CPU machine `modq worker` starts one process per
core by default. This parent only supervises: it loads no model and imports no Celery app.
Each child is a plain `modq worker --processes 1` with its own Celery node name
(`modq-<i>@<host>`), its own metrics port (base + i) and one ONNX thread unless
MODQ_INTRA_OP_THREADS says otherwise.

- A child that dies (killed, out of memory, native code crashing on a photo) is started again
  after a backoff; its unacknowledged listings are redelivered as for any dead worker, and
  the poison counter parks a listing that keeps killing workers (docs/reliability.md).
- SIGTERM or SIGINT goes to every child once (Celery's warm shutdown: batches in flight
  finish); the parent exits when they have. Children run in their own session, so a Ctrl-C
  in a terminal reaches them only through the parent, and never twice (Celery would turn a
  second one into a cold shutdown).
- Children die with the parent even when it is SIGKILLed (Linux PR_SET_PDEATHSIG): no orphan
  keeps consuming without supervision.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("modq.worker")

# A child that ran this long before dying starts again at once; one that keeps dying sooner
# waits 1, 2, 4 ... up to MAX_BACKOFF_S seconds, so a worker that cannot start does not spin.
HEALTHY_AFTER_S = 60.0
MAX_BACKOFF_S = 60.0
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1
# Loaded here, not between fork and exec, where the child should do as little as possible.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0))


def _die_with(parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    failures: int = 0


class Supervisor:
    """Start `len(commands)` children, restart the ones that die, stop them all on a signal."""

    def __init__(self, commands: Sequence[list[str]], env: dict[str, str]) -> None:
        self.commands = list(commands)
        self.env = env
        self.stopping = False
        self.stop_signal: int | None = None
        self.running: dict[int, _Child] = {}
        # index -> (monotonic time to start it again, failures so far)
        self.pending: dict[int, tuple[float, int]] = {}

    def _start(self, index: int, failures: int = 0) -> None:
        proc = subprocess.Popen(
            self.commands[index],
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),  # safe: this parent runs no threads
        )
        self.running[index] = _Child(index, proc, time.monotonic(), failures)
        log.info("worker process %d started (pid %d)", index, proc.pid)
        if self.stopping:  # a signal came while it was being started: it missed the forward
            proc.send_signal(signal.SIGTERM)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info(
                "%s: stopping %d worker processes", signal.Signals(signum).name, len(self.running)
            )
        self.stopping = True
        self.stop_signal = self.stop_signal or signum
        self.pending.clear()
        for child in self.running.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signum)

    def run(self) -> int:
        """Supervise until stopped by a signal or every child has exited by itself (a Celery
        `shutdown` command); the exit status is the first non-zero child status, else 0.
        Polls: a child's death is noticed within POLL_S, which is plenty for a restart."""
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        status = 0
        try:
            for index in range(len(self.commands)):
                if not self.stopping:
                    self._start(index)
            while self.running or self.pending:
                time.sleep(POLL_S)
                for index, child in list(self.running.items()):
                    code = child.proc.poll()
                    if code is None:
                        continue
                    del self.running[index]
                    if self.stopping or code == 0:
                        status = status or self._stopped_status(code)
                        continue
                    self._schedule_restart(child, code)
                now = time.monotonic()
                for index, (due, failures) in list(self.pending.items()):
                    if now < due or self.stopping:
                        continue
                    # pop, not del: a signal's handler may have emptied `pending` meanwhile
                    if self.pending.pop(index, None) is not None:
                        self._start(index, failures)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return status

    def _stopped_status(self, code: int) -> int:
        """What a child's exit during a stop means for the supervisor's status. Killed by the
        very signal that was forwarded (it came before Celery installed its handlers, while the
        child was still starting, so it held no listing): a clean stop. Killed by any other
        signal N: 128 + N, as a shell would report it."""
        if code < 0 and -code == self.stop_signal:
            return 0
        return 128 - code if code < 0 else code

    def _schedule_restart(self, child: _Child, code: int) -> None:
        lived = time.monotonic() - child.started
        failures = 0 if lived >= HEALTHY_AFTER_S else child.failures + 1
        delay = 0.0 if failures == 0 else min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        log.error(
            "worker process %d (pid %d) died with %s after %.0f s; starting it again in %.0f s",
            child.index, child.proc.pid, how, lived, delay,
        )  # fmt: skip
        self.pending[child.index] = (time.monotonic() + delay, failures)
