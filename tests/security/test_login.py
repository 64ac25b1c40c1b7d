"""Log-in: one answer and the same work for every refusal, attempts counted before the
password is checked (so parallel guesses cannot overtake the limit), a lock-out that only
binds the address that earned it, and a per-address throttle. Real HTTP, real concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modq.console import auth
from tests.console_server import PASSWORD, LiveConsole, live_console
from tests.security.kit import client, csrf_of, try_login


@pytest.fixture()
def verified(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every argon2 verification the in-process console does: "real" (a user's hash) or
    "dummy". The console's own function still runs: this only counts."""
    calls: list[str] = []
    lock = threading.Lock()
    real_verify: Callable[[str, str], bool] = auth._verify

    def counting(password_hash: str, password: str) -> bool:
        with lock:
            calls.append("dummy" if password_hash == auth._DUMMY else "real")
        return real_verify(password_hash, password)

    monkeypatch.setattr(auth, "_verify", counting)
    yield calls


def test_every_refusal_looks_the_same_and_costs_the_same(
    live: LiveConsole, verified: list[str]
) -> None:
    http = client(live)
    answers = {}
    for attempt in range(5):  # max's budget at this address: five wrong passwords
        answers[f"wrong {attempt}"] = try_login(http, "max", "wrong password")
    answers["locked, right password"] = try_login(http, "max", PASSWORD)
    answers["unknown name"] = try_login(http, "nobody-here", "wrong password")
    for what, response in answers.items():
        assert response.status_code == 401, what
        assert auth.LOGIN_REFUSED in response.text, what
        assert "locked" not in response.text, what
    # One verification each: the locked account and the unknown name against the dummy.
    assert verified == ["real"] * 5 + ["dummy", "dummy"]


def _parallel_attempts(live: LiveConsole, n: int, right_at: int | None) -> list[int]:
    """`n` simultaneous log-ins as max from one address, the right password at `right_at`."""
    forms = []
    for i in range(n):
        http = client(live)
        token = csrf_of(http.get("/login").text)
        password = PASSWORD if i == right_at else f"guess {i}"
        forms.append((http, {"name": "max", "password": password, "csrf": token}))
    start = threading.Barrier(n)

    def attempt(job: tuple[object, dict[str, str]]) -> int:
        http, form = job
        start.wait()
        return int(http.post("/login", data=form).status_code)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(attempt, forms))


@pytest.mark.parametrize("n", [30, 80])
def test_parallel_guesses_cannot_pass_the_limit(
    live: LiveConsole, verified: list[str], n: int
) -> None:
    statuses = _parallel_attempts(live, n, right_at=None)
    limit = live.settings.login_max_failures
    assert verified.count("real") <= limit, f"{verified.count('real')} passwords checked"
    assert len(verified) == n  # and every attempt did the same work
    assert statuses == [401] * n
    # The budget is spent: the right password now waits out the window.
    assert try_login(client(live), "max").status_code == 401


def test_the_right_password_among_parallel_guesses_is_checked_at_most_in_budget(
    live: LiveConsole, verified: list[str]
) -> None:
    statuses = _parallel_attempts(live, 30, right_at=29)
    limit = live.settings.login_max_failures
    # It logs in only if its attempt was counted within the budget. A log-in clears the name's
    # count (as it must for a user who mistyped), so the guesses counted after it get a budget
    # of their own: at most two budgets' worth of checks, never the 29 of the issue.
    assert statuses.count(303) <= 1 and statuses.count(401) >= 29, statuses
    budgets = 2 if 303 in statuses else 1
    assert verified.count("real") <= budgets * limit


def test_a_stranger_cannot_lock_a_moderator_out(live: LiveConsole) -> None:
    stranger = client(live, "127.0.0.2")
    for _ in range(12):
        assert try_login(stranger, "mia", "wrong password").status_code == 401
    assert try_login(stranger, "mia").status_code == 401  # locked at the stranger's address
    assert try_login(client(live, "127.0.0.1"), "mia").status_code == 303  # not at mia's


def test_one_address_spraying_many_names_is_throttled(datasets_dir: Path, tmp_path: Path) -> None:
    with live_console(datasets_dir, tmp_path, login_max_per_address=8) as live:
        sprayer = client(live, "127.0.0.3")
        for _ in range(12):  # a busy office behind one address: successes spend nothing
            assert try_login(client(live, "127.0.0.3"), "lea").status_code == 303
        for i in range(8):
            assert try_login(sprayer, f"user{i}", "password1").status_code == 401
        assert try_login(sprayer, "lea").status_code == 401  # even a right password
        assert try_login(client(live, "127.0.0.4"), "lea").status_code == 303


def test_the_lock_lifts_when_its_window_ends(datasets_dir: Path, tmp_path: Path) -> None:
    import time

    # A 10 s window: long enough for the seven attempts on a loaded machine, short to wait out.
    with live_console(datasets_dir, tmp_path, login_lockout_s=10.0) as live:
        http = client(live)
        for _ in range(6):
            try_login(http, "max", "wrong password")
        assert try_login(http, "max").status_code == 401
        deadline = time.monotonic() + 40
        while try_login(http, "max").status_code != 303:
            assert time.monotonic() < deadline, "still locked long after the window"
            time.sleep(0.5)
