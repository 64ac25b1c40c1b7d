"""A photo host whose name the resolver never answers costs at most the fetch deadline.

`getaddrinfo` takes no timeout; with a name server that swallows queries it blocks for the
resolver's own timeout (here 30 s, from `options timeout:30 attempts:1`). The fetch runs in a
child process with a private mount namespace (`unshare -m`) whose /etc/resolv.conf names a UDP
socket of this test that reads nothing: the real resolver, asking a real, silent server. The
machine's own /etc/resolv.conf is untouched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modq.settings import Settings

SILENT_DNS = "127.0.23.53"  # any loopback address answers on Linux; port 53 needs root
DEADLINE_S = 2.0

CHILD = textwrap.dedent(
    """
    import sys, time
    from modq.pipeline.fetch import PhotoFetcher
    from modq.settings import get_settings

    with PhotoFetcher(get_settings()) as fetcher:
        started = time.monotonic()
        try:
            fetcher.fetch(sys.argv[1])
            print("fetched")
        except Exception as exc:
            print(type(exc).__name__, exc)
        print(f"elapsed {time.monotonic() - started:.2f}")
    """
)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m (mount namespace)")
def test_a_silent_name_server_costs_at_most_the_fetch_deadline(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {SILENT_DNS}\noptions timeout:30 attempts:1\n")
    (tmp_path / "child.py").write_text(CHILD)
    host = "photos.modq-dns-test.example"
    settings = Settings(
        allowed_hosts=[host], fetch_timeout_s=DEADLINE_S, fetch_deadline_s=DEADLINE_S,
        fetch_retries=0,
    )  # fmt: skip
    env = {**os.environ, **settings.to_env()}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((SILENT_DNS, 53))
        script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "$0" "$@"'
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, sys.executable, str(tmp_path / "child.py"),
             f"http://{host}/a.jpg"],
            env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        silent.setblocking(False)
        query, _ = silent.recvfrom(4096)  # the resolver did ask, and got no answer
    assert host.split(".")[0].encode() in query
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stdout + done.stderr
    assert lines[0].startswith("PhotoFetchRetryable DNS lookup for " + host), lines
    elapsed = float(lines[1].split()[1])
    assert elapsed < DEADLINE_S + 1.0, lines  # not the resolver's 30 s
