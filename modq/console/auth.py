"""Accounts, sessions and CSRF for the console.

Passwords are hashed with argon2id (argon2-cffi). The session is a cookie signed with
itsdangerous (a secret of at least 32 bytes) holding the user name, the user's session
generation, the log-in time and a CSRF token; every visitor gets one, so even the login form
carries a token, and every POST must echo the session's token or gets 403.

On every request the user's row is read again: the role (a demotion takes effect at once) and
the session generation, which logout, a password reset and a role change bump, so a cookie
stolen or left behind stops working then. A session also ends `console_session_hours` after
its log-in however busy, and after `console_idle_minutes` without a request.

Log-in attempts are counted per (name, client address) and per address before the password is
checked (docs/console.md, "Security"); every refusal gives the same answer after the same work
(one argon2 verification), whether the name exists, the password is wrong or the count is
spent.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from modq.errors import ConfigError
from modq.settings import Settings
from modq.store.database import Engine
from modq.store.users import count_attempts, end_sessions, forgive_attempt, get_user, upsert_user

COOKIE = "modq_session"
ROLE_RANK = {"moderator": 0, "lead": 1, "admin": 2}
MIN_SECRET_BYTES = 32
# The one answer to every refused log-in.
LOGIN_REFUSED = "wrong name or password, or too many attempts: wait a few minutes"
_HASHER = PasswordHasher()
# Verified against when the user does not exist or may not try now, so the work is the same.
_DUMMY = _HASHER.hash("not-a-password")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def add_user(engine: Engine, name: str, role: str, password: str) -> bool:
    """Create or reset a console account (ending its sessions); True when it was created."""
    if len(password) < 8:
        from modq.errors import ReviewError

        raise ReviewError("passwords must have at least 8 characters")
    return upsert_user(engine, name, role, hash_password(password))


def _checked(secret: str, where: str) -> str:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{where} holds {len(secret.encode())} bytes; the console needs a secret of at least "
            f"{MIN_SECRET_BYTES} (e.g. the output of `openssl rand -base64 48`)"
        )
    return secret


def _create_secret(path: Path) -> None:
    """Write a fresh secret to a private temporary file (O_CREAT|O_EXCL, 0600), flush it to
    disk, then link it into place: `path` never exists empty or half-written, and of two
    consoles starting together the first to link wins and the other reads its secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # unlike rename, never replaces a secret another console made
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def console_secret(settings: Settings) -> str:
    """MODQ_CONSOLE_SECRET, else a random secret kept in the data dir (0600); refused
    (`ConfigError`) when under 32 bytes, an empty file included."""
    if settings.console_secret:
        return _checked(settings.console_secret, "MODQ_CONSOLE_SECRET")
    path = Path(settings.data_dir) / "console-secret"
    if not path.exists():
        _create_secret(path)
    return _checked(path.read_text().strip(), f"{path} (delete it to get a new one)")


@dataclass(frozen=True)
class CurrentUser:
    name: str
    role: str

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class NotLoggedIn(Exception):
    """Raised by `require_user`; the app answers 401 (photos, JSON) or redirects to login."""


def client_address(request: Request) -> str:
    """The peer's address (behind a proxy: run uvicorn with --proxy-headers so this is the
    browser's, not the proxy's)."""
    return request.client.host if request.client else "unknown"


class Sessions:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._signer = URLSafeTimedSerializer(console_secret(settings), salt="modq-session")
        self._idle_s = int(settings.console_idle_minutes * 60)
        self._lifetime_s = settings.console_session_hours * 3600
        self._secure = settings.console_secure_cookies
        self._engine = engine
        self._max_failures = settings.login_max_failures
        self._max_per_address = settings.login_max_per_address
        self._window = timedelta(seconds=settings.login_lockout_s)

    def read(self, request: Request) -> dict[str, Any]:
        """The request's session (a fresh anonymous one with a new CSRF token if none)."""
        cached = getattr(request.state, "session", None)
        if cached is not None:
            return dict(cached)
        session: dict[str, Any] = {}
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                # max_age: the idle limit (the cookie is signed again on every page).
                session = dict(self._signer.loads(raw, max_age=self._idle_s))
            except BadSignature:
                session = {}
        if not isinstance(session.get("csrf"), str):
            session = {"csrf": secrets.token_urlsafe(32)}
        request.state.session = session
        return dict(session)

    def write(self, response: Response, session: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self._signer.dumps(session),
            max_age=self._idle_s,
            httponly=True,
            samesite="strict",
            secure=self._secure,
        )

    def start(self, response: Response, user: CurrentUser) -> None:
        """A new session (and CSRF token) at log-in: no session fixation."""
        row = get_user(self._engine, user.name)
        gen = row.session_gen if row is not None else -1
        session = {"user": user.name, "gen": gen, "iat": time.time()}
        self.write(response, session | {"csrf": secrets.token_urlsafe(32)})

    def end(self, response: Response, user: CurrentUser | None) -> None:
        """Log out: every session of the user ends (on every device), this one gets a fresh
        anonymous cookie."""
        if user is not None:
            end_sessions(self._engine, user.name)
        self.write(response, {"csrf": secrets.token_urlsafe(32)})

    def user(self, request: Request) -> CurrentUser | None:
        session = self.read(request)
        name, gen, iat = session.get("user"), session.get("gen"), session.get("iat")
        if not isinstance(name, str) or not isinstance(gen, int):
            return None
        if not isinstance(iat, int | float) or time.time() - iat > self._lifetime_s:
            return None
        row = get_user(self._engine, name)
        if row is None or row.session_gen != gen:
            return None
        return CurrentUser(row.name, row.role)

    def require_user(self, request: Request, role: str = "moderator") -> CurrentUser:
        user = self.user(request)
        if user is None:
            raise NotLoggedIn()
        if not user.at_least(role):
            raise HTTPException(403, f"this needs the {role} role; you are a {user.role}")
        return user

    def check_csrf(self, request: Request, token: str | None) -> None:
        expected = self.read(request).get("csrf", "")
        if not token or not hmac.compare_digest(str(token), str(expected)):
            raise HTTPException(403, "missing or invalid CSRF token: reload the page")

    def login(self, name: str, password: str, address: str) -> CurrentUser | None:
        """The user when `password` is theirs and they may try now, else None.

        The attempt is counted (atomically, for the name at this address and for the
        address) before anything else, and the password verified in every case, against a
        dummy hash when the name is unknown or the count spent.
        """
        name = name.replace("\x00", "")[:200]
        now = datetime.now(UTC)
        pair, addr = f"name:{name}@{address}", f"addr:{address}"
        counts = count_attempts(self._engine, [pair, addr], now, now + self._window)
        allowed = counts[pair] <= self._max_failures and counts[addr] <= self._max_per_address
        row = get_user(self._engine, name)
        real = allowed and row is not None
        ok = _verify(row.password_hash if real and row is not None else _DUMMY, password)
        if not (real and ok) or row is None:
            return None
        forgive_attempt(self._engine, pair, addr, now)
        return CurrentUser(row.name, row.role)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
