"""Accounts, sessions and CSRF for the console.

Passwords are hashed with argon2id (argon2-cffi). The session is a cookie signed with
itsdangerous holding the user name and a CSRF token; every visitor gets one, so even the login
form carries a token, and every POST must echo the session's token or gets 403. The user's
role is re-read from the database on every request, so a demotion takes effect at once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from modq.settings import Settings
from modq.store.database import Engine
from modq.store.users import get_user, record_login, upsert_user

COOKIE = "modq_session"
ROLE_RANK = {"moderator": 0, "lead": 1, "admin": 2}
_HASHER = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal names.
_DUMMY = _HASHER.hash("not-a-password")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def add_user(engine: Engine, name: str, role: str, password: str) -> bool:
    """Create or reset a console account; True when it was created."""
    if len(password) < 8:
        from modq.errors import ReviewError

        raise ReviewError("passwords must have at least 8 characters")
    return upsert_user(engine, name, role, hash_password(password))


def console_secret(settings: Settings) -> str:
    """MODQ_CONSOLE_SECRET, else a random secret kept in the data dir (0600)."""
    if settings.console_secret:
        return settings.console_secret
    path = Path(settings.data_dir) / "console-secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


@dataclass(frozen=True)
class CurrentUser:
    name: str
    role: str

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class NotLoggedIn(Exception):
    """Raised by `require_user`; the app answers 401 (photos, JSON) or redirects to login."""


class Sessions:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._signer = URLSafeTimedSerializer(console_secret(settings), salt="modq-session")
        self._max_age = int(settings.console_session_hours * 3600)
        self._secure = settings.console_secure_cookies
        self._engine = engine
        self._max_failures = settings.login_max_failures
        self._lockout = timedelta(seconds=settings.login_lockout_s)

    def read(self, request: Request) -> dict[str, Any]:
        """The request's session (a fresh anonymous one with a new CSRF token if none)."""
        cached = getattr(request.state, "session", None)
        if cached is not None:
            return dict(cached)
        session: dict[str, Any] = {}
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                session = dict(self._signer.loads(raw, max_age=self._max_age))
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
            max_age=self._max_age,
            httponly=True,
            samesite="strict",
            secure=self._secure,
        )

    def user(self, request: Request) -> CurrentUser | None:
        name = self.read(request).get("user")
        if not isinstance(name, str):
            return None
        row = get_user(self._engine, name)
        return CurrentUser(row.name, row.role) if row is not None else None

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

    def login(self, name: str, password: str) -> tuple[CurrentUser | None, str]:
        """Check a password, counting failures; (user, "") or (None, why)."""
        row = get_user(self._engine, name)
        now = datetime.now(UTC)
        if row is None:
            _verify(_DUMMY, password)
            return None, "wrong name or password"
        if row.locked_until is not None and row.locked_until > now:
            return None, "too many failed logins: this account is locked for a while"
        ok = _verify(row.password_hash, password)
        record_login(
            self._engine, name, ok, max_failures=self._max_failures, lock_until=now + self._lockout
        )
        if not ok:
            return None, "wrong name or password"
        return CurrentUser(row.name, row.role), ""


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
