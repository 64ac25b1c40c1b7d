"""Photo references → bytes, without letting a listing make modq read what it should not.

A reference is a local path, a `file://` URL or an `http(s)://` URL (see docs/photo-sources.md).
Local files must resolve, symlinks included, inside one of `image_roots`. HTTP hosts must be in
`allowed_hosts`, and every address they resolve to must be public unless the host (and port) is
also in `private_hosts`; that check runs for each redirect hop before anything connects, and
again inside our connection pool on the very addresses it dials (`modq.pipeline.hosts`).
Each HTTP attempt has one total deadline, `fetch_timeout_s`, covering connect, TLS, response
headers, redirects and body; all attempts together, backoff included, end by
`fetch_deadline_s`. Bodies are streamed and cut at `max_image_bytes`. Every failure is a
`PhotoError` with a short message the pipeline prefixes with `image_unreadable: `; transient
ones are retried here with a short backoff.
"""

from __future__ import annotations

import os
import re
import stat
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

import httpx

from modq.errors import (
    PhotoFetchError,
    PhotoFetchRetryable,
    PhotoForbiddenError,
    PhotoTooLargeError,
)
from modq.pipeline.hosts import HostPolicy, blocked_reason, deadline_at, guarded_client
from modq.settings import Settings

__all__ = ["HostPolicy", "PhotoFetcher", "blocked_reason", "display_url"]

MAX_REDIRECTS = 5
BACKOFF_S = 0.2
# Linux (and most file systems): longest file name and path, in bytes.
NAME_MAX = 255
PATH_MAX = 4096
# Another attempt is not started with less than this left before `fetch_deadline_s`.
MIN_ATTEMPT_S = 0.1
# Two or more characters, so a Windows drive letter ("C:\\x") still reads as a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_HEADERS = {
    "User-Agent": "modq-photo-fetcher/1",
    "Accept": "image/*",
    # Photos are compressed already; an encoded body would let a small response inflate
    # past the byte cap in one chunk (gzip bomb), so it is asked for plain and refused otherwise.
    "Accept-Encoding": "identity",
}


def display_url(url: httpx.URL | str) -> str:
    """The URL for messages: credentials and query dropped (signed URLs carry secrets there)."""
    try:
        url = httpx.URL(url)
        shown = str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = str(url).split("?", 1)[0]
    return shown if len(shown) <= 200 else shown[:197] + "..."


class PhotoFetcher:
    """Thread-safe: settings are read-only and the one httpx client pools connections."""

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self._roots = settings.image_root_paths
        self._policy = HostPolicy(settings)
        self._timeout = settings.fetch_timeout_s
        self._deadline = settings.fetch_deadline_s
        self._retries = max(0, settings.fetch_retries)
        self._max_bytes = settings.max_image_bytes
        self._owns_client = client is None
        self._client = client or guarded_client(self._policy, self._timeout)

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
        ref = _short(ref)
        path = Path(path_text)
        _check_name_lengths(path, ref)
        candidates = [path] if path.is_absolute() else [root / path for root in self._roots]
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except (OSError, RuntimeError, ValueError) as exc:  # loops, NUL bytes
                raise PhotoFetchError(f"invalid path {ref}: {exc}") from exc
            if not any(resolved.is_relative_to(root) for root in self._roots):
                raise PhotoForbiddenError(f"{ref} is outside the image roots (image_roots)")
            _check_name_lengths(resolved, ref)  # a root + a long relative path
            try:
                found = resolved.exists()
            except OSError as exc:  # e.g. a component the file system refuses
                raise PhotoFetchError(f"invalid path {ref}: {exc.strerror}") from exc
            if found:
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
        give_up = time.monotonic() + self._deadline
        attempts = 1 + self._retries
        for attempt in range(attempts):
            try:
                return self._fetch_once(url, min(time.monotonic() + self._timeout, give_up))
            except PhotoFetchRetryable as exc:
                pause = BACKOFF_S * 2**attempt
                out_of_time = give_up - time.monotonic() - pause < MIN_ATTEMPT_S
                if attempt + 1 == attempts or out_of_time:
                    tried = f"tried {attempt + 1} times" if attempt else ""
                    if out_of_time and attempt + 1 < attempts:
                        tried += "; " if tried else ""
                        tried += f"fetch_deadline_s {self._deadline:g} s reached"
                    raise PhotoFetchRetryable(f"{exc} ({tried})" if tried else str(exc)) from exc
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _check_url(self, url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise PhotoForbiddenError(f"redirect to unsupported scheme {url.scheme!r} refused")
        host = url.raw_host.decode("ascii")
        self._policy.check_host(host)
        self._policy.resolve(host, url.port or (443 if url.scheme == "https" else 80))

    def _fetch_once(self, url: httpx.URL, deadline: float) -> bytes:
        """One attempt, redirects included, ended by `deadline` (a monotonic time). Our own
        client's connections enforce it inside every socket operation (`deadline_at`); an
        injected client is only checked between hops and body chunks."""
        current = url
        with deadline_at(deadline):
            for _ in range(MAX_REDIRECTS + 1):
                self._check_url(current)
                shown = display_url(current)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out(shown)
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
                    raise self._timed_out(shown) from exc
                except httpx.TransportError as exc:
                    detail = str(exc) or type(exc).__name__
                    raise PhotoFetchRetryable(f"connection failed for {shown}: {detail}") from exc
        raise PhotoFetchError(f"more than {MAX_REDIRECTS} redirects from {display_url(url)}")

    def _timed_out(self, shown: str) -> PhotoFetchRetryable:
        return PhotoFetchRetryable(f"timed out after {self._timeout:g} s: {shown}")

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
                raise self._timed_out(shown)
        return bytes(body)


def _short(ref: str) -> str:
    """`ref` for messages: at most 200 characters (references can be long)."""
    return ref if len(ref) <= 200 else ref[:197] + "..."


def _check_name_lengths(path: Path, ref: str) -> None:
    """Refuse, before any system call, names no file system here would accept: a component
    over NAME_MAX or a path over PATH_MAX would otherwise fail as OSError ENAMETOOLONG."""
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > NAME_MAX:
        raise PhotoForbiddenError(
            f"{ref}: a path component is {longest} bytes, over the limit of {NAME_MAX}"
        )
    if len(os.fsencode(str(path))) > PATH_MAX:
        raise PhotoForbiddenError(f"{ref}: the path is over the limit of {PATH_MAX} bytes")


def _file_url_path(ref: str) -> str:
    parts = urllib.parse.urlsplit(ref)
    if parts.netloc not in ("", "localhost"):
        raise PhotoForbiddenError(f"file:// URL names a host ({parts.netloc}); only local files")
    path = urllib.parse.unquote(parts.path)
    if not path.startswith("/"):
        raise PhotoFetchError(f"file:// URL needs an absolute path: {ref}")
    return path
