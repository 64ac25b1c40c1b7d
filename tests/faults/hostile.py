"""Hostile photo sources for the soak: servers that answer slowly or never finish, bombs,
huge and truncated files, symlinks and paths outside the image roots, SSRF targets and
absurd references. Each `hostile_refs` entry is one photo reference a listing may carry."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from tests.photokit import bomb_png, colour_jpeg


@contextmanager
def hostile_server(hold_s: float = 30.0) -> Iterator[str]:
    """/slow-headers (headers never finish: a byte a second for `hold_s`), /trickle (a body
    of one byte a second)."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/slow-headers"):  # a header byte a second, never done
                deadline = time.monotonic() + hold_s
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    while time.monotonic() < deadline and not stop.is_set():
                        self.wfile.write(b"z")
                        self.wfile.flush()
                        stop.wait(1.0)
                except OSError:
                    pass
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            deadline = time.monotonic() + hold_s
            try:
                while time.monotonic() < deadline and not stop.is_set():
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    stop.wait(1.0)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def _jpeg_bomb() -> bytes:
    """A real 7000×7000 JPEG of one colour: small on disk, 147 MB as pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (7000, 7000), (200, 30, 30)).save(buf, "JPEG", quality=10)
    return buf.getvalue()


def hostile_refs(root: Path, base_url: str, redis_port: int) -> list[str]:
    """One reference per hostile kind; files are made under `root` (an image root)."""
    root.mkdir(parents=True, exist_ok=True)
    good = colour_jpeg("fashion.hat")
    files = {
        "png-bomb.png": bomb_png(),
        "jpeg-bomb.jpg": _jpeg_bomb(),
        "truncated.jpg": good[: len(good) // 3],
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    with (root / "huge.jpg").open("wb") as huge:  # sparse: 64 MiB over any byte cap
        huge.write(b"\xff\xd8")
        huge.truncate(64 * 1024 * 1024)
    link = root / "passwd.jpg"
    if not link.exists():
        os.symlink("/etc/passwd", link)
    long_dir = root / ("d" * 200)
    long_dir.mkdir(exist_ok=True)
    return [
        f"{base_url}/slow-headers.jpg",
        f"{base_url}/trickle.jpg",
        str(root / "png-bomb.png"),
        str(root / "jpeg-bomb.jpg"),
        str(root / "truncated.jpg"),
        str(root / "huge.jpg"),
        str(link),
        "/etc/hostname",
        str(root / "../../../../etc/passwd"),
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.jpg",
        f"http://127.0.0.1:{redis_port}/",
        str(long_dir / ("x" * 300 + ".jpg")),
    ]


def huge_ref() -> str:
    """A 1 MB reference (a few listings only: each is stored in the intake table)."""
    return "http://example.invalid/" + "a" * (1024 * 1024)
