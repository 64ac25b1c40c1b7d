"""PhotoFetcher against a real HTTP server on 127.0.0.1 and real files under a temporary root.

Nothing here may send traffic anywhere but loopback: an autouse tripwire on socket.connect
fails the test (and refuses the connection) if anything dials another address, which is also
how the redirect tests prove that private targets are refused *without connecting*.
"""

from __future__ import annotations

import errno
import http.server
import ipaddress
import os
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from modq.errors import (
    PhotoError,
    PhotoFetchError,
    PhotoFetchRetryable,
    PhotoForbiddenError,
    PhotoTooLargeError,
    RetryableError,
)
from modq.pipeline.fetch import HostPolicy, PhotoFetcher, blocked_reason
from modq.settings import Settings

CAP = 256 * 1024


def fetch_settings(**overrides: Any) -> Settings:
    """Every fetch-related field explicit, so MODQ_* variables in the environment cannot leak in."""
    values: dict[str, Any] = {
        "image_roots": [],
        "allowed_hosts": ["127.0.0.1"],
        "private_hosts": ["127.0.0.1:*"],
        "fetch_timeout_s": 3.0,
        "fetch_retries": 2,
        "max_image_bytes": CAP,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse, and record, any attempt to connect to a non-loopback address."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            host = str(address[0])
            attempts.append(host)
            if not ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
                raise OSError(errno.ENETUNREACH, f"test tripwire: refusing to dial {host}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    outside = [a for a in attempts if not ipaddress.ip_address(a.split("%", 1)[0]).is_loopback]
    assert not outside, f"tried to connect outside loopback: {outside}"


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up mid-response on purpose here (cap reached, timeout)


class PhotoServer:
    """ThreadingHTTPServer whose paths each play one misbehaving photo host."""

    def __init__(self, jpeg: bytes) -> None:
        self.jpeg = jpeg
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def hit(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    def wait_hits(self, path: str, count: int, within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while self.hits[path] < count:
            assert time.monotonic() < deadline, f"{path}: {self.hits[path]} hits, wanted {count}"
            time.sleep(0.01)

    def stop(self) -> None:
        self.release.set()  # unblock the handlers that hang on purpose
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                server.hit(url.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                name = url.path.strip("/").replace("-", "_").replace(".", "_")
                route = getattr(self, "route_" + name, None)
                try:
                    if route is None:
                        self.send(404, b"not found")
                    else:
                        route(query)
                except OSError:  # the client hung up on purpose (cap reached, timeout)
                    self.close_connection = True

            def send(self, status: int, body: bytes, **headers: str) -> None:
                self.send_response(status)
                named = {name.replace("_", "-"): value for name, value in headers.items()}
                named.setdefault("Content-Length", str(len(body)))
                for name, value in named.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def route_photo_jpg(self, query: dict[str, str]) -> None:
                self.send(200, server.jpeg, Content_Type="image/jpeg")

            def route_500(self, query: dict[str, str]) -> None:
                self.send(500, b"boom")

            def route_flaky(self, query: dict[str, str]) -> None:
                if server.hits["/flaky"] <= 2:
                    self.send(503, b"busy")
                else:
                    self.send(200, server.jpeg)

            def route_slow(self, query: dict[str, str]) -> None:
                server.release.wait(30)
                self.close_connection = True

            def route_redirect(self, query: dict[str, str]) -> None:
                self.send(302, b"", Location=query["to"])

            def route_loop(self, query: dict[str, str]) -> None:
                self.send(302, b"", Location="/loop")

            def route_oversize(self, query: dict[str, str]) -> None:
                self.send(200, b"\xff" * (CAP * 4))

            def route_unsized(self, query: dict[str, str]) -> None:
                # No Content-Length: the body runs until the connection closes.
                self.close_connection = True
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(b"\xff" * (CAP // 16))

            def route_declares_huge(self, query: dict[str, str]) -> None:
                # Headers only; the body never comes. Reading it would time out.
                self.send_response(200)
                self.send_header("Content-Length", str(CAP * 10))
                self.end_headers()
                server.release.wait(30)
                self.close_connection = True

            def route_short_body(self, query: dict[str, str]) -> None:
                self.close_connection = True
                self.send(200, server.jpeg, Content_Length=str(len(server.jpeg) + 500))

            def route_long_body(self, query: dict[str, str]) -> None:
                self.close_connection = True
                self.send(200, b"\xff" * (CAP * 4), Content_Length="100")

            def route_gzip(self, query: dict[str, str]) -> None:
                self.send(200, b"\x1f\x8b\x08\x00", Content_Encoding="gzip")

        return Handler


@pytest.fixture(scope="session")
def jpeg(datasets_dir: Path) -> bytes:
    photo = sorted((datasets_dir / "listings-v1" / "val" / "fashion.shoes").glob("*.jpg"))[0]
    return photo.read_bytes()


@pytest.fixture
def server(jpeg: bytes) -> Iterator[PhotoServer]:
    srv = PhotoServer(jpeg)
    yield srv
    srv.stop()


@pytest.fixture
def fetcher() -> Iterator[Callable[..., PhotoFetcher]]:
    made: list[PhotoFetcher] = []

    def _make(**overrides: Any) -> PhotoFetcher:
        made.append(PhotoFetcher(fetch_settings(**overrides)))
        return made[-1]

    yield _make
    for f in made:
        f.close()


# -- HTTP: success and retries -------------------------------------------------------------


def test_fetches_a_real_jpeg(server: PhotoServer, fetcher: Callable[..., PhotoFetcher]) -> None:
    assert fetcher().fetch(f"{server.base}/photo.jpg") == server.jpeg
    assert server.hits["/photo.jpg"] == 1


def test_follows_a_relative_redirect(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    assert fetcher().fetch(f"{server.base}/redirect?to=/photo.jpg") == server.jpeg
    assert server.hits["/redirect"] == 1 and server.hits["/photo.jpg"] == 1


def test_404_is_permanent_and_not_retried(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoFetchError) as info:
        fetcher().fetch(f"{server.base}/missing.jpg")
    assert str(info.value) == f"HTTP 404 from {server.base}/missing.jpg"
    assert not isinstance(info.value, RetryableError)
    assert server.hits["/missing.jpg"] == 1


def test_500_is_retried_then_raised(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoFetchRetryable) as info:
        fetcher(fetch_retries=2).fetch(f"{server.base}/500")
    assert str(info.value) == f"HTTP 500 from {server.base}/500 (tried 3 times)"
    assert server.hits["/500"] == 3


def test_no_retries_when_fetch_retries_is_zero(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoFetchRetryable, match=r"^HTTP 500 from .*/500$"):
        fetcher(fetch_retries=0).fetch(f"{server.base}/500")
    assert server.hits["/500"] == 1


def test_transient_503_recovers_within_the_retries(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    assert fetcher(fetch_retries=2).fetch(f"{server.base}/flaky") == server.jpeg
    assert server.hits["/flaky"] == 3


def test_timeout_is_retryable_and_retried(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoFetchRetryable) as info:
        fetcher(fetch_timeout_s=0.3, fetch_retries=1).fetch(f"{server.base}/slow")
    assert str(info.value) == f"timed out after 0.3 s: {server.base}/slow (tried 2 times)"
    assert isinstance(info.value.__cause__, PhotoFetchRetryable)
    server.wait_hits("/slow", 2)
    assert server.hits["/slow"] == 2


def test_concurrent_fetches_share_one_client(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    f = fetcher()
    refs = [f"{server.base}/photo.jpg" if i % 4 else f"{server.base}/nope" for i in range(40)]

    def one(ref: str) -> bytes | str:
        try:
            return f.fetch(ref)
        except PhotoError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, refs))
    for ref, result in zip(refs, results, strict=True):
        expected = server.jpeg if ref.endswith("photo.jpg") else f"HTTP 404 from {ref}"
        assert result == expected
    assert server.hits["/photo.jpg"] == 30 and server.hits["/nope"] == 10


# -- HTTP: size cap --------------------------------------------------------------------------


def test_declared_length_over_the_cap_is_refused_before_reading(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    # The server never sends this body: reading it would time out instead.
    with pytest.raises(PhotoTooLargeError) as info:
        fetcher(fetch_retries=0).fetch(f"{server.base}/declares-huge")
    assert str(info.value) == (
        f"{server.base}/declares-huge is {CAP * 10} bytes, "
        f"over the cap of {CAP} bytes (max_image_bytes)"
    )


def test_oversize_body_with_honest_length(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoTooLargeError, match=rf"is {CAP * 4} bytes, over the cap of {CAP}"):
        fetcher().fetch(f"{server.base}/oversize")
    assert server.hits["/oversize"] == 1  # permanent: not retried


def test_unsized_body_is_cut_at_the_cap(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoTooLargeError) as info:
        fetcher().fetch(f"{server.base}/unsized")
    assert (
        str(info.value) == f"{server.base}/unsized is over the cap of {CAP} bytes (max_image_bytes)"
    )


def test_length_shorter_than_the_body_reads_only_what_was_declared(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    assert fetcher().fetch(f"{server.base}/long-body") == b"\xff" * 100


def test_length_longer_than_the_body_is_a_retryable_broken_transfer(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoFetchRetryable) as info:
        fetcher(fetch_retries=1).fetch(f"{server.base}/short-body")
    assert str(info.value).startswith(f"connection failed for {server.base}/short-body: ")
    assert str(info.value).endswith("(tried 2 times)")
    assert server.hits["/short-body"] == 2


def test_encoded_body_is_refused(server: PhotoServer, fetcher: Callable[..., PhotoFetcher]) -> None:
    with pytest.raises(PhotoFetchError) as info:
        fetcher().fetch(f"{server.base}/gzip")
    assert str(info.value) == f"refusing Content-Encoding gzip from {server.base}/gzip"


# -- HTTP: where we may connect --------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "allowed", "message"),
    [
        ("http://10.1.2.3/x.jpg", ["127.0.0.1"], "host 10.1.2.3 is not in allowed_hosts"),
        (
            "http://10.1.2.3/x.jpg",
            ["*"],
            "10.1.2.3 resolves to a private address (10.1.2.3); "
            "list the host in private_hosts to allow it",
        ),
        (
            "http://169.254.169.254/latest",
            ["127.0.0.1"],
            "host 169.254.169.254 is not in allowed_hosts",
        ),
        (
            "http://169.254.169.254/latest",
            ["*"],
            "169.254.169.254 resolves to a link-local address (169.254.169.254); "
            "list the host in private_hosts to allow it",
        ),
        (
            "http://[::ffff:10.1.2.3]/x.jpg",
            ["*"],
            "::ffff:10.1.2.3 resolves to a private address (::ffff:10.1.2.3); "
            "list the host in private_hosts to allow it",
        ),
        ("file:///etc/passwd", ["*"], "redirect to unsupported scheme 'file' refused"),
    ],
)
def test_redirect_to_a_private_target_is_refused_without_connecting(
    server: PhotoServer,
    fetcher: Callable[..., PhotoFetcher],
    loopback_only: list[str],
    target: str,
    allowed: list[str],
    message: str,
) -> None:
    ref = f"{server.base}/redirect?to={urllib.parse.quote(target, safe='')}"
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher(allowed_hosts=allowed).fetch(ref)
    assert str(info.value) == message
    assert server.hits["/redirect"] == 1  # permanent: not retried
    assert set(loopback_only) == {"127.0.0.1"}


def test_redirect_to_ipv6_loopback_is_refused_when_only_ipv4_loopback_is_trusted(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher], loopback_only: list[str]
) -> None:
    ref = f"{server.base}/redirect?to=http://[::1]:1/x.jpg"
    with pytest.raises(PhotoForbiddenError, match=r"^::1 resolves to a loopback address \(::1\)"):
        fetcher(allowed_hosts=["*"]).fetch(ref)
    assert "::1" not in loopback_only


def test_redirect_loop_stops_after_five_hops(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoFetchError) as info:
        fetcher().fetch(f"{server.base}/loop")
    assert str(info.value) == f"more than 5 redirects from {server.base}/loop"
    assert server.hits["/loop"] == 6


def test_loopback_is_refused_unless_in_private_hosts(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher(private_hosts=[]).fetch(f"{server.base}/photo.jpg")
    assert str(info.value) == (
        "127.0.0.1 resolves to a loopback address (127.0.0.1); "
        "list the host in private_hosts to allow it"
    )
    assert sum(server.hits.values()) == 0


def test_a_name_resolving_to_loopback_is_refused(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    port = server.base.rsplit(":", 1)[1]
    with pytest.raises(PhotoForbiddenError, match=r"^localhost resolves to a loopback address"):
        fetcher(allowed_hosts=["localhost"], private_hosts=[]).fetch(
            f"http://localhost:{port}/photo.jpg"
        )
    assert sum(server.hits.values()) == 0


def test_the_pool_rechecks_addresses_at_connect_time(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher], loopback_only: list[str]
) -> None:
    # Going straight to the client skips fetch()'s pre-check, as a DNS answer that changed
    # after it would: the connection pool must still refuse before dialling.
    f = fetcher(private_hosts=[])
    with pytest.raises(PhotoForbiddenError, match=r"^127\.0\.0\.1 resolves to a loopback"):
        f._client.get(f"{server.base}/photo.jpg")
    with pytest.raises(PhotoForbiddenError, match=r"^host 10\.1\.2\.3 is not in allowed_hosts"):
        f._client.get("http://10.1.2.3/x.jpg")
    assert loopback_only == [] and sum(server.hits.values()) == 0


def test_host_not_in_allowed_hosts_is_refused(fetcher: Callable[..., PhotoFetcher]) -> None:
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher().fetch("http://images.example.invalid/x.jpg")
    assert str(info.value) == "host images.example.invalid is not in allowed_hosts"


def test_http_is_disabled_without_allowed_hosts(fetcher: Callable[..., PhotoFetcher]) -> None:
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher(allowed_hosts=[]).fetch("https://cdn.example.com/x.jpg")
    assert str(info.value) == (
        "HTTP fetching is disabled: set allowed_hosts (MODQ_ALLOWED_HOSTS) "
        "to a list of hosts, or '*' for any public host"
    )


def test_allowed_hosts_matching() -> None:
    policy = HostPolicy(fetch_settings(allowed_hosts=["CDN.Example.com.", "*.img.example.org"]))
    policy.check_host("cdn.example.com")
    policy.check_host("a.b.img.example.org")
    for host in ("img.example.org", "example.com", "evil-cdn.example.com", "xcdn.example.com"):
        with pytest.raises(PhotoForbiddenError, match=f"^host {host} is not in allowed_hosts$"):
            policy.check_host(host)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(address) == reason


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "ftp://127.0.0.1/x.jpg",
            "unsupported scheme 'ftp': use a local path, file:// or http(s)://",
        ),
        (
            "data:image/png;base64,AAAA",
            "unsupported scheme 'data': use a local path, file:// or http(s)://",
        ),
        ("file://example.com/x.jpg", "file:// URL names a host (example.com); only local files"),
    ],
)
def test_unsupported_references(
    fetcher: Callable[..., PhotoFetcher], ref: str, message: str
) -> None:
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher().fetch(ref)
    assert str(info.value) == message


def test_messages_drop_credentials_and_query(
    server: PhotoServer, fetcher: Callable[..., PhotoFetcher]
) -> None:
    netloc = server.base.removeprefix("http://")
    with pytest.raises(PhotoFetchError) as info:
        fetcher().fetch(f"http://user:s3cret@{netloc}/gone.jpg?X-Signature=t0ken")
    assert str(info.value) == f"HTTP 404 from {server.base}/gone.jpg"


def test_injected_client_is_still_checked_and_not_closed(server: PhotoServer) -> None:
    with httpx.Client(trust_env=False) as client:
        with PhotoFetcher(fetch_settings(allowed_hosts=["*"]), client=client) as f:
            assert f.fetch(f"{server.base}/photo.jpg") == server.jpeg
            with pytest.raises(PhotoForbiddenError, match="private address"):
                f.fetch(f"{server.base}/redirect?to=http://10.1.2.3/x.jpg")
        assert not client.is_closed


def test_close_closes_its_own_client() -> None:
    with PhotoFetcher(fetch_settings()) as f:
        pass
    assert f._client.is_closed


# -- local files ------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, jpeg: bytes) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.jpg").write_bytes(jpeg)
    (tmp_path / "outside.jpg").write_bytes(jpeg)
    return tmp_path / "root"


def test_local_files_inside_the_root(
    root: Path, jpeg: bytes, fetcher: Callable[..., PhotoFetcher]
) -> None:
    f = fetcher(image_roots=[str(root)])
    photo = root / "sub" / "a.jpg"
    assert f.fetch(str(photo)) == jpeg
    assert f.fetch(photo.as_uri()) == jpeg
    assert f.fetch("sub/a.jpg") == jpeg  # relative to the image roots
    (root / "inside-link.jpg").symlink_to(photo)
    assert f.fetch(str(root / "inside-link.jpg")) == jpeg


def test_a_root_reached_through_a_symlink(
    root: Path, jpeg: bytes, tmp_path: Path, fetcher: Callable[..., PhotoFetcher]
) -> None:
    (tmp_path / "root-link").symlink_to(root)
    f = fetcher(image_roots=[str(tmp_path / "root-link")])
    assert f.fetch(str(tmp_path / "root-link" / "sub" / "a.jpg")) == jpeg


@pytest.mark.parametrize("how", ["absolute", "relative", "file-url"])
def test_traversal_out_of_the_root_is_refused(
    root: Path, fetcher: Callable[..., PhotoFetcher], how: str
) -> None:
    ref = {
        "absolute": f"{root}/sub/../../outside.jpg",
        "relative": "../outside.jpg",
        "file-url": f"file://{root}/sub/../../outside.jpg",
    }[how]
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher(image_roots=[str(root)]).fetch(ref)
    assert str(info.value) == f"{ref} is outside the image roots (image_roots)"


def test_symlink_out_of_the_root_is_refused(
    root: Path, tmp_path: Path, fetcher: Callable[..., PhotoFetcher]
) -> None:
    (root / "sub" / "escape.jpg").symlink_to(tmp_path / "outside.jpg")
    ref = str(root / "sub" / "escape.jpg")
    with pytest.raises(PhotoForbiddenError, match="is outside the image roots"):
        fetcher(image_roots=[str(root)]).fetch(ref)


def test_local_paths_are_disabled_without_image_roots(
    root: Path, fetcher: Callable[..., PhotoFetcher]
) -> None:
    with pytest.raises(PhotoForbiddenError) as info:
        fetcher(image_roots=[]).fetch(str(root / "sub" / "a.jpg"))
    assert str(info.value) == (
        "local paths are disabled: set image_roots (MODQ_IMAGE_ROOTS) "
        "to the folders photos may be read from"
    )


def test_missing_file(root: Path, fetcher: Callable[..., PhotoFetcher]) -> None:
    ref = str(root / "sub" / "nope.jpg")
    with pytest.raises(PhotoFetchError) as info:
        fetcher(image_roots=[str(root)]).fetch(ref)
    assert str(info.value) == f"no such file: {ref}"
    assert not isinstance(info.value, RetryableError)


def test_oversize_file_is_refused_from_its_size(
    root: Path, fetcher: Callable[..., PhotoFetcher]
) -> None:
    big = root / "big.jpg"
    with big.open("wb") as fh:
        fh.truncate(CAP + 1)  # sparse: the size is what is checked, nothing is read
    with pytest.raises(PhotoTooLargeError) as info:
        fetcher(image_roots=[str(root)]).fetch(str(big))
    assert str(info.value) == (
        f"{big} is {CAP + 1} bytes, over the cap of {CAP} bytes (max_image_bytes)"
    )


def test_directories_and_fifos_are_not_photos(
    root: Path, fetcher: Callable[..., PhotoFetcher]
) -> None:
    f = fetcher(image_roots=[str(root)])
    with pytest.raises(PhotoFetchError, match=f"^not a regular file: {root / 'sub'}$"):
        f.fetch(str(root / "sub"))

    fifo = root / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read_fifo() -> None:
        try:
            f.fetch(str(fifo))
        except PhotoError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read_fifo, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader so the test run can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("fetching a FIFO blocked")
    assert [str(e) for e in outcome] == [f"not a regular file: {fifo}"]
