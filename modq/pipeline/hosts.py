"""Where photo fetches may connect, and the clock every socket operation runs against.

`HostPolicy` holds the `allowed_hosts` / `private_hosts` decisions (docs/photo-sources.md).
`GuardedBackend` is the httpcore network backend of modq's own HTTP client: it repeats the
host checks at connect time and dials only the addresses it has just checked (DNS rebinding),
and it bounds every connect, TLS handshake, read and write by the fetch deadline the calling
thread set with `deadline_at`. A server that sends its headers a byte at a time, or trickles a
body forever, therefore cannot hold a fetch past that deadline: each socket operation gets at
most the time that is left. Name lookups are held to it too: `getaddrinfo` cannot be given a
timeout (the resolver's own is 5 s × attempts × name servers), so it runs on a helper thread
that the fetch stops waiting for when the deadline comes (`lookup`).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from modq.errors import ConfigError, PhotoFetchError, PhotoFetchRetryable, PhotoForbiddenError
from modq.settings import Settings

# A plain `private_hosts` entry trusts the host on the standard web ports only.
DEFAULT_PRIVATE_PORTS = frozenset({80, 443})
ANY_PORT = -1

_BLOCKED = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_unspecified", "unspecified"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


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


def norm_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def parse_private_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `host:*`, `[v6]:port` → (host, port); port None = 80/443 only,
    ANY_PORT = every port. A bare IPv6 literal (several colons, no brackets) has no port."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    else:
        host, port_text = entry, None
    if port_text is None:
        return norm_host(host), None
    if port_text == "*":
        return norm_host(host), ANY_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"private_hosts entry {entry!r}: port must be 1-65535 or '*'")
    return norm_host(host), int(port_text)


class HostPolicy:
    """`allowed_hosts` / `private_hosts` decisions, shared by the pre-check and the pool."""

    def __init__(self, settings: Settings) -> None:
        entries = [norm_host(h) for h in settings.allowed_hosts if h.strip()]
        self.enabled = bool(entries)
        self.allow_any = "*" in entries
        self.suffixes = tuple(h[1:] for h in entries if h.startswith("*.") and len(h) > 2)
        self.allowed = {h for h in entries if not h.startswith("*")}
        self.private: dict[str, set[int]] = {}
        for entry in settings.private_hosts:
            if entry.strip():
                host, port = parse_private_entry(entry)
                ports = self.private.setdefault(host, set())
                ports.update(DEFAULT_PRIVATE_PORTS if port is None else {port})

    def check_host(self, host: str) -> None:
        if not self.enabled:
            raise PhotoForbiddenError(
                "HTTP fetching is disabled: set allowed_hosts (MODQ_ALLOWED_HOSTS) "
                "to a list of hosts, or '*' for any public host"
            )
        host = norm_host(host)
        if not (self.allow_any or host in self.allowed or host.endswith(self.suffixes)):
            raise PhotoForbiddenError(f"host {host} is not in allowed_hosts")

    def trusted(self, host: str, port: int) -> bool:
        ports = self.private.get(norm_host(host), set())
        return port in ports or ANY_PORT in ports

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of `host`; refused if any is non-public and (host, port) is not
        trusted by `private_hosts`."""
        host = norm_host(host)
        try:
            infos = lookup(host, port)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise PhotoFetchRetryable(f"DNS lookup for {host} failed temporarily") from exc
            raise PhotoFetchError(f"unknown host {host}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.trusted(host, port):
            for address in addresses:
                reason = blocked_reason(address)
                if reason:
                    raise PhotoForbiddenError(self._refusal(host, port, address, reason))
        return addresses

    def _refusal(self, host: str, port: int, address: str, reason: str) -> str:
        text = f"{host} resolves to a {reason} address ({address}); "
        if host in self.private:
            shown = f"[{host}]" if ":" in host else host
            return text + (
                f"private_hosts trusts it on ports {_ports(self.private[host])} only: "
                f"list {shown}:{port} to allow port {port}"
            )
        return text + "list the host in private_hosts to allow it"


def _ports(ports: set[int]) -> str:
    return " and ".join(str(p) for p in sorted(ports))


# -- the fetch deadline ---------------------------------------------------------------------

_local = threading.local()


@contextmanager
def deadline_at(when: float) -> Iterator[None]:
    """Bound every socket operation this thread makes through a `GuardedBackend` until the
    block ends by `when` (a `time.monotonic()` value)."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = when
    try:
        yield
    finally:
        _local.deadline = previous


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout`, shortened to what is left before this thread's deadline."""
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("fetch deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


def lookup(host: str, port: int) -> list[Any]:
    """`socket.getaddrinfo(host, port)` (TCP), given at most what is left of this thread's
    fetch deadline; `PhotoFetchRetryable` when the resolver has not answered by then.

    The lookup runs on a daemon thread: a call blocked in the resolver cannot be cancelled,
    so an abandoned one finishes (or times out in the resolver) on its own, holding nothing
    of the fetch's.
    """
    remaining = _bounded(None, PhotoFetchRetryable)
    if remaining is None:  # no deadline on this thread (a pre-check outside a fetch)
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    answer: list[Any] = []
    done = threading.Event()

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting fetch below
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=resolve, name=f"modq-dns {host}", daemon=True).start()
    if not done.wait(remaining):
        raise PhotoFetchRetryable(
            f"DNS lookup for {host} did not answer within the fetch deadline "
            f"({remaining:.1f} s left)"
        )
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return list(answer[0])


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write gets at most the time left to the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """Network backend that re-checks the host, dials only the addresses it just checked, and
    holds every connection to the calling thread's fetch deadline."""

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
            bounded = _bounded(timeout, httpcore.ConnectTimeout)
            try:
                stream = super().connect_tcp(address, port, bounded, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next address, as getaddrinfo users do
                last = exc
                continue
            return DeadlineStream(stream)
        raise last or httpcore.ConnectError(f"no address for {host}")


def guarded_client(policy: HostPolicy, timeout: float) -> httpx.Client:
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
