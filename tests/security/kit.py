"""HTTP helpers for the hostile-input suite: a real client (httpx) against the live console."""

from __future__ import annotations

import re

import httpx

from tests.console_server import PASSWORD, LiveConsole

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def client(live: LiveConsole, address: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from `address` (any of 127.0.0.0/8 reaches the
    console on 127.0.0.1, so tests can be several clients on one machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    # A deadline, not a timing: 80 parallel log-ins are 80 argon2 checks, which on two busy
    # cores take well over 30 s for the last one to be answered.
    return httpx.Client(base_url=live.url, transport=transport, timeout=180)


def try_login(http: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(http.get("/login").text)
    return http.post("/login", data={"name": name, "password": password, "csrf": token})


def logged_in(live: LiveConsole, name: str, address: str = "127.0.0.1") -> httpx.Client:
    http = client(live, address)
    response = try_login(http, name)
    assert response.status_code == 303, response.text
    return http


def page_csrf(http: httpx.Client, path: str = "/") -> str:
    return csrf_of(http.get(path).text)
