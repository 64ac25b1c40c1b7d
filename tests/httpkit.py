"""A real HTTP server on 127.0.0.1 for photo-fetching tests: good photos, errors, stalls and
redirects to addresses modq must refuse (never contacted: the refusal comes first)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class PhotoServer:
    base: str
    files: dict[str, bytes]
    hits: Counter[str] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@contextmanager
def photo_server(files: dict[str, bytes]) -> Iterator[PhotoServer]:
    """Routes: /f/<name> serves files[name]; /status/<code>; /stall (answers only at
    teardown); /redirect?to=<url> (302)."""
    state = PhotoServer(base="", files=files)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.hits[path] += 1
            if path.startswith("/f/") and path[3:] in state.files:
                body = state.files[path[3:]]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif path.startswith("/status/"):
                self.send_response(int(path.rsplit("/", 1)[1]))
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/stall":
                state.release.wait(30)
            elif path == "/redirect":
                self.send_response(302)
                self.send_header("Location", self.path.split("to=", 1)[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@dataclass
class HostileServer:
    """Handlers that never finish on their own: they pace their bytes on `release`, which
    teardown sets, so nothing here sleeps and nothing outlives the test."""

    base: str
    sent: Counter[str] = field(default_factory=Counter)  # bytes written, per path
    hits: Counter[str] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@contextmanager
def hostile_server(body: bytes = b"", pace_s: float = 0.05) -> Iterator[HostileServer]:
    """Routes: /slow-headers (a valid status line, then one header byte every `pace_s`,
    forever); /trickle (complete headers announcing a 1 MB body, then one byte every `pace_s`);
    /photo (`body`, at once); /redirect?to=<url> (302)."""
    state = HostileServer(base="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def drip(self, path: str, data: bytes) -> None:
            while not state.release.wait(pace_s):  # until teardown or the client hangs up
                self.wfile.write(data)
                self.wfile.flush()
                state.sent[path] += len(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.hits[path] += 1
            self.close_connection = True
            try:
                if path == "/slow-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
                    self.drip(path, b"a")
                elif path == "/trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(1 << 20))
                    self.end_headers()
                    self.drip(path, b"\xff")
                elif path == "/photo":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    # Said, not only done: a client that reuses the connection would race
                    # the close ("server disconnected without sending a response").
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", self.path.split("to=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_error(404)
            except OSError:  # the client gave up on us: that is the point
                pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
