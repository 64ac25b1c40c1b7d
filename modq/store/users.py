"""Console accounts in SQL: create, look up, and count failed logins for the lock-out.

Passwords arrive here already hashed (argon2, in `modq.console.auth`); this module only
stores and reads rows of `users`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.review import ROLES
from modq.errors import ReviewError
from modq.store.database import as_utc, unavailable
from modq.store.schema import users


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    failed_logins: int
    locked_until: datetime | None


def upsert_user(engine: Engine, name: str, role: str, password_hash: str) -> bool:
    """Create `name` or reset its role and password (and lock-out); True when created."""
    if role not in ROLES:
        raise ReviewError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    with unavailable(f"saving user {name}"), engine.begin() as conn:
        updated = conn.execute(
            sa.update(users)
            .where(users.c.name == name)
            .values(role=role, password_hash=password_hash, failed_logins=0, locked_until=None)
        ).rowcount
        if updated:
            return False
        conn.execute(sa.insert(users).values(name=name, role=role, password_hash=password_hash))
        return True


def get_user(engine: Engine, name: str) -> User | None:
    c = users.c
    query = sa.select(c.name, c.role, c.password_hash, c.failed_logins, c.locked_until)
    with unavailable("reading a user"), engine.connect() as conn:
        row = conn.execute(query.where(c.name == name)).first()
    if row is None:
        return None
    locked = as_utc(row.locked_until) if row.locked_until is not None else None
    return User(row.name, row.role, row.password_hash, int(row.failed_logins), locked)


def record_login(
    engine: Engine, name: str, ok: bool, *, max_failures: int, lock_until: datetime
) -> None:
    """Reset the failure count after a good password; count a bad one and lock the account
    until `lock_until` once it reaches `max_failures` (the count then restarts)."""
    c = users.c
    with unavailable("recording a login"), engine.begin() as conn:
        if ok:
            conn.execute(
                sa.update(users).where(c.name == name).values(failed_logins=0, locked_until=None)
            )
            return
        failures = c.failed_logins + 1
        conn.execute(
            sa.update(users)
            .where(c.name == name)
            .values(
                failed_logins=sa.case((failures >= max_failures, 0), else_=failures),
                locked_until=sa.case((failures >= max_failures, lock_until), else_=c.locked_until),
            )
        )


def list_users(engine: Engine) -> list[tuple[str, str]]:
    with unavailable("listing users"), engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(sa.select(users.c.name, users.c.role))]
