"""Photo references → bytes, without letting a listing make modq read what it should not.

A reference is a local path, a `file://` URL or an `http(s)://` URL (see docs/photo-sources.md).
Local files must resolve, symlinks included, inside one of `image_roots`. HTTP hosts must be in
`allowed_hosts`, and every address they resolve to must be public unless the host is also in
`private_hosts`. That check runs for each redirect hop before anything connects, and again
inside our connection pool on the very addresses it dials, so a DNS answer that changes between
check and connect (DNS rebinding) is refused too. Bodies are streamed and cut at
`max_image_bytes`. Every failure is a `PhotoError` with a short message the pipeline prefixes
with `image_unreadable: `; transient ones are retried here with a short backoff.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any

import httpcore
import httpx

from modq.errors import (
    PhotoFetchError,
    PhotoFetchRetryable,
    PhotoForbiddenError,
    PhotoTooLargeError,
)
from modq.settings import Settings

MAX_REDIRECTS = 5
BACKOFF_S = 0.2
# Two or more characters, so a Windows drive letter ("C:\\x") still reads as a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_HEADERS = {
    "User-Agent": "modq-photo-fetcher/1",
    "Accept": "image/*",
    # Photos are compressed already; an encoded body would let a small response inflate
    # past the byte cap in one chunk (gzip bomb), so it is asked for plain and refused otherwise.
    "Accept-Encoding": "identity",
}
_BLOCKED = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_unspecified", "unspecified"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


def display_url(url: httpx.URL | str) -> str:
    """The URL for messages: credentials and query dropped (signed URLs carry secrets there)."""
    try:
        url = httpx.URL(url)
        shown = str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = str(url).split("?", 1)[0]
    return shown if len(shown) <= 200 else shown[:197] + "..."


def blocked_reason(address: str) -> str | None:
    """Why `address` is not a public unicast address ("loopback", "private", ...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, word in _BLOCKED:
        if getattr(ip, attribute):
            return word
    # Catches the rest, e.g. 100.64.0.0/10 (carrier-grade NAT) and documentation ranges.
    return None if ip.is_global else "non-public"


def _norm_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


class HostPolicy:
    """`allowed_hosts` / `private_hosts` decisions, shared by the pre-check and the pool."""

    def __init__(self, settings: Settings) -> None:
        entries = [_norm_host(h) for h in settings.allowed_hosts if h.strip()]
        self.enabled = bool(entries)
        self.allow_any = "*" in entries
        self.suffixes = tuple(h[1:] for h in entries if h.startswith("*.") and len(h) > 2)
        self.allowed = {h for h in entries if not h.startswith("*")}
        self.private = {_norm_host(h) for h in settings.private_hosts if h.strip()}

    def check_host(self, host: str) -> None:
        if not self.enabled:
            raise PhotoForbiddenError(
                "HTTP fetching is disabled: set allowed_hosts (MODQ_ALLOWED_HOSTS) "
                "to a list of hosts, or '*' for any public host"
            )
        host = _norm_host(host)
        if not (self.allow_any or host in self.allowed or host.endswith(self.suffixes)):
            raise PhotoForbiddenError(f"host {host} is not in allowed_hosts")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of `host`; refused if any is non-public and the host is not trusted."""
        host = _norm_host(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise PhotoFetchRetryable(f"DNS lookup for {host} failed temporarily") from exc
            raise PhotoFetchError(f"unknown host {host}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if host not in self.private:
            for address in addresses:
                reason = blocked_reason(address)
                if reason:
                    raise PhotoForbiddenError(
                        f"{host} resolves to a {reason} address ({address}); "
                        "list the host in private_hosts to allow it"
                    )
        return addresses


class GuardedBackend(httpcore.SyncBackend):
    """Network backend that re-checks the host and dials only the addresses it just checked."""

    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        self._policy.check_host(host)
        last: httpcore.ConnectError | None = None
        for address in self._policy.resolve(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next address, as getaddrinfo users do
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")


def _guarded_client(policy: HostPolicy, timeout: float) -> httpx.Client:
    # Environment proxies would make the address checks meaningless, hence trust_env=False.
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public hook for name resolution; its pool is httpcore's, which takes a
    # network backend. Same settings as httpx's default pool, plus our backend.
    limits = httpx.Limits()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy),
    )
    return httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )


class PhotoFetcher:
    """Thread-safe: settings are read-only and the one httpx client pools connections."""

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self._roots = settings.image_root_paths
        self._policy = HostPolicy(settings)
        self._timeout = settings.fetch_timeout_s
        self._retries = max(0, settings.fetch_retries)
        self._max_bytes = settings.max_image_bytes
        self._owns_client = client is None
        self._client = client or _guarded_client(self._policy, self._timeout)

    def __enter__(self) -> PhotoFetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def fetch(self, ref: str) -> bytes:
        """The bytes `ref` names. Raises `PhotoError` subclasses only."""
        ref = ref.strip()
        match = _SCHEME.match(ref)
        scheme = match.group(1).lower() if match else None
        if scheme is None:
            return self._read_local(ref, ref)
        if scheme == "file":
            return self._read_local(_file_url_path(ref), ref)
        if scheme in ("http", "https"):
            return self._fetch_http(ref)
        raise PhotoForbiddenError(
            f"unsupported scheme {scheme!r}: use a local path, file:// or http(s)://"
        )

    # -- local files ---------------------------------------------------------------------

    def _read_local(self, path_text: str, ref: str) -> bytes:
        if not self._roots:
            raise PhotoForbiddenError(
                "local paths are disabled: set image_roots (MODQ_IMAGE_ROOTS) "
                "to the folders photos may be read from"
            )
        path = Path(path_text)
        candidates = [path] if path.is_absolute() else [root / path for root in self._roots]
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except (OSError, RuntimeError, ValueError) as exc:  # loops, NUL bytes
                raise PhotoFetchError(f"invalid path {ref}: {exc}") from exc
            if not any(resolved.is_relative_to(root) for root in self._roots):
                raise PhotoForbiddenError(f"{ref} is outside the image roots (image_roots)")
            if resolved.exists():
                return self._read_file(resolved, ref)
        raise PhotoFetchError(f"no such file: {ref}")

    def _read_file(self, path: Path, ref: str) -> bytes:
        # O_NOFOLLOW: the path was resolved, so a symlink here was swapped in after the check.
        # O_NONBLOCK: opening a FIFO must not hang; fstat below refuses it anyway.
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as exc:
            raise PhotoFetchError(f"no such file: {ref}") from exc
        except OSError as exc:
            raise PhotoFetchError(f"cannot open {ref}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > self._max_bytes:
            os.close(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PhotoFetchError(f"not a regular file: {ref}")
            raise self._too_large(ref, info.st_size)
        with os.fdopen(fd, "rb") as file:
            try:
                data = file.read(self._max_bytes + 1)
            except OSError as exc:
                raise PhotoFetchError(f"cannot read {ref}: {exc.strerror}") from exc
        if len(data) > self._max_bytes:  # grew after the stat
            raise self._too_large(ref, None)
        return data

    def _too_large(self, what: str, size: int | None) -> PhotoTooLargeError:
        actual = f"{size} bytes, " if size is not None else ""
        return PhotoTooLargeError(
            f"{what} is {actual}over the cap of {self._max_bytes} bytes (max_image_bytes)"
        )

    # -- HTTP ------------------------------------------------------------------------------

    def _fetch_http(self, ref: str) -> bytes:
        try:
            url = httpx.URL(ref)
        except httpx.InvalidURL as exc:
            raise PhotoFetchError(f"invalid URL {display_url(ref)}: {exc}") from exc
        attempts = 1 + self._retries
        for attempt in range(attempts):
            try:
                return self._fetch_once(url)
            except PhotoFetchRetryable as exc:
                if attempt + 1 == attempts:
                    suffix = f" (tried {attempts} times)" if attempts > 1 else ""
                    raise PhotoFetchRetryable(f"{exc}{suffix}") from exc
                time.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    def _check_url(self, url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise PhotoForbiddenError(f"redirect to unsupported scheme {url.scheme!r} refused")
        host = url.raw_host.decode("ascii")
        self._policy.check_host(host)
        self._policy.resolve(host, url.port or (443 if url.scheme == "https" else 80))

    def _fetch_once(self, url: httpx.URL) -> bytes:
        deadline = time.monotonic() + self._timeout
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(current)
            shown = display_url(current)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PhotoFetchRetryable(f"timed out after {self._timeout:g} s: {shown}")
            request = self._client.build_request(
                "GET", current, headers=_HEADERS, timeout=min(self._timeout, remaining)
            )
            try:
                response = self._client.send(request, stream=True, follow_redirects=False)
                try:
                    if response.next_request is not None:
                        current = response.next_request.url
                        continue
                    return self._read_body(response, shown, deadline)
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                raise PhotoFetchRetryable(f"timed out after {self._timeout:g} s: {shown}") from exc
            except httpx.TransportError as exc:
                detail = str(exc) or type(exc).__name__
                raise PhotoFetchRetryable(f"connection failed for {shown}: {detail}") from exc
        raise PhotoFetchError(f"more than {MAX_REDIRECTS} redirects from {display_url(url)}")

    def _read_body(self, response: httpx.Response, shown: str, deadline: float) -> bytes:
        status = response.status_code
        if status >= 500 or status in (408, 429):
            raise PhotoFetchRetryable(f"HTTP {status} from {shown}")
        if not 200 <= status < 300:
            raise PhotoFetchError(f"HTTP {status} from {shown}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise PhotoFetchError(f"refusing Content-Encoding {encoding} from {shown}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(shown, int(declared))
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > self._max_bytes:
                raise self._too_large(shown, None)
            if time.monotonic() > deadline:
                raise PhotoFetchRetryable(f"timed out after {self._timeout:g} s: {shown}")
        return bytes(body)


def _file_url_path(ref: str) -> str:
    parts = urllib.parse.urlsplit(ref)
    if parts.netloc not in ("", "localhost"):
        raise PhotoForbiddenError(f"file:// URL names a host ({parts.netloc}); only local files")
    path = urllib.parse.unquote(parts.path)
    if not path.startswith("/"):
        raise PhotoFetchError(f"file:// URL needs an absolute path: {ref}")
    return path
