"""Sessions: nothing forged gets in, and a session ends when it should (logout, password
reset, role change, idle, absolute lifetime), on a live console over real HTTP."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
from itsdangerous import URLSafeTimedSerializer

from modq.console.auth import COOKIE, add_user
from tests.console_server import PASSWORD, LiveConsole, live_console
from tests.security.kit import client, logged_in, page_csrf


def _home(live: LiveConsole, cookie: str) -> int:
    """GET / with exactly this cookie (the reply's refreshed cookie is not kept)."""
    with httpx.Client(base_url=live.url, cookies={COOKIE: cookie}) as http:
        return http.get("/").status_code


def test_forged_cookies_do_not_log_in(live: LiveConsole) -> None:
    claims = {"user": "lea", "gen": 0, "iat": time.time(), "csrf": "x"}
    for key in ("", "modq", "test-secret"):
        forged = URLSafeTimedSerializer(key, salt="modq-session").dumps(claims)
        assert _home(live, forged) == 303  # to the login page
    # A genuine cookie with its payload edited fails its signature.
    http = logged_in(live, "mia")
    cookie = http.cookies[COOKIE]
    assert _home(live, cookie) == 200
    payload, stamp, signature = cookie.split(".")
    edited = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b'"mia"', b'"lea"')
    )
    assert _home(live, f"{edited.decode().rstrip('=')}.{stamp}.{signature}") == 303


def test_logout_ends_every_session_of_the_user(live: LiveConsole) -> None:
    laptop, phone = logged_in(live, "mia"), logged_in(live, "mia")
    stolen = laptop.cookies[COOKIE]
    assert _home(live, stolen) == 200
    response = laptop.post("/logout", data={"csrf": page_csrf(laptop)})
    assert response.status_code == 303
    assert _home(live, stolen) == 303
    assert phone.get("/").status_code == 303  # the other device too
    assert logged_in(live, "mia").get("/").status_code == 200  # a new log-in works


def test_password_reset_and_role_change_end_sessions(live: LiveConsole) -> None:
    mia, lea = logged_in(live, "mia"), logged_in(live, "lea")
    add_user(live.engine, "mia", "moderator", "a new password!")  # `modq users add` again
    assert mia.get("/").status_code == 303
    add_user(live.engine, "lea", "moderator", PASSWORD)  # demoted
    assert lea.get("/").status_code == 303
    assert logged_in(live, "lea").get("/queues/escalated").status_code == 403


def test_login_issues_a_new_session_no_fixation(live: LiveConsole) -> None:
    http = client(live)
    http.get("/login")
    before = http.cookies[COOKIE]
    token = page_csrf(http, "/login")
    http.post("/login", data={"name": "mia", "password": PASSWORD, "csrf": token})
    assert http.cookies[COOKIE] != before
    assert _home(live, before) == 303  # the planted pre-login cookie stays anonymous
    assert page_csrf(http) != token


def test_csrf_is_required_and_bound_to_the_session(live: LiveConsole) -> None:
    mia, max_ = logged_in(live, "mia"), logged_in(live, "max")
    assert mia.post("/queues/banned/start").status_code == 403
    assert mia.post("/queues/banned/start", data={"csrf": page_csrf(max_)}).status_code == 403
    assert mia.post("/queues/banned/start", data={"csrf": page_csrf(mia)}).status_code == 303


def _refused_within(check: object, seconds: float) -> float:
    """Poll `check` (True while the session works) until it fails; seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if callable(check) and not check():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"the session still worked after {seconds} s")


def test_a_busy_session_still_ends_at_its_absolute_lifetime(
    datasets_dir: Path, tmp_path: Path
) -> None:
    # 8 s lifetime, 1 h idle: a session used every 0.25 s must end anyway.
    with live_console(datasets_dir, tmp_path, console_session_hours=8 / 3600) as live:
        http = logged_in(live, "mia")
        assert http.get("/").status_code == 200
        _refused_within(lambda: http.get("/").status_code == 200, 40)


def test_an_idle_session_ends_a_used_one_does_not(datasets_dir: Path, tmp_path: Path) -> None:
    with live_console(datasets_dir, tmp_path, console_idle_minutes=5 / 60) as live:
        busy = logged_in(live, "mia")
        idle = logged_in(live, "max").cookies[COOKIE]  # never refreshed from here on
        assert _home(live, idle) == 200

        def both() -> bool:
            assert busy.get("/").status_code == 200  # used every 0.25 s: stays valid
            return _home(live, idle) == 200

        _refused_within(both, 40)
