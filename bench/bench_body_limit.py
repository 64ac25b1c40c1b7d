"""The console's resident memory before and after anonymous 64 MB POSTs to /login.

    .venv/bin/python bench/bench_body_limit.py

Starts `modq console` in a subprocess on a throw-away migrated database, reads its VmRSS,
sends a 64 MB multipart body to /login (once chunked, once with its Content-Length), and
reads VmRSS again. Without a body limit the console reads the whole body (issue 22: 153 →
717 MB); with it, the request is refused with 413 after at most 64 KiB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_console import serve
from bench.bench_store import fresh_database
from modq.settings import Settings, get_settings
from modq.store.database import migrate

SIZE = 64 << 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


BOUNDARY = "modqbench"
# 64 file parts of 1 MB each (under Starlette's per-part limit, so a parser keeps them all).
PART = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="f.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    + b"x" * ((1 << 20) - 200)
    + b"\r\n"
)
HEAD = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n'.encode()
TAIL = f"--{BOUNDARY}--\r\n".encode()


def chunks() -> object:
    yield HEAD
    for _ in range(SIZE >> 20):
        yield PART
    yield TAIL


def main() -> None:
    with fresh_database(get_settings().database_url, None, False) as url:
        migrate(url)
        settings = Settings(database_url=url, console_secret="b" * 40, data_dir=Path("/tmp/mq"))
        proc = serve(settings, 18_766)
        try:
            base = "http://127.0.0.1:18766"
            httpx.get(f"{base}/login")
            print(f"console RSS after start: {rss_mb(proc.pid):.0f} MB")
            form = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
            whole = HEAD + PART * (SIZE >> 20) + TAIL
            for how, body in (("chunked", chunks()), ("Content-Length", whole)):
                try:
                    status = httpx.post(
                        f"{base}/login",
                        content=body,
                        headers=form,
                        timeout=60,  # type: ignore[arg-type]
                    ).status_code
                except httpx.HTTPError as exc:  # refused before the client finished sending
                    status = type(exc).__name__
                print(f"64 MB POST /login ({how}): {status}; RSS {rss_mb(proc.pid):.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
