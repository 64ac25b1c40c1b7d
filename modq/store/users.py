"""Console accounts in SQL: create, look up, end every session of a user, and count log-in
attempts for the lock-out.

Passwords arrive here already hashed (argon2, in `modq.console.auth`); this module only
stores and reads rows of `users` and `login_attempts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.review import ROLES
from modq.errors import ReviewError, StoreUnavailable
from modq.store.database import dialect_insert, unavailable
from modq.store.schema import login_attempts, users

T = TypeVar("T")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    session_gen: int


def upsert_user(engine: Engine, name: str, role: str, password_hash: str) -> bool:
    """Create `name` or reset its role and password; True when created. A reset ends every
    session the user holds (the session generation moves on)."""
    if role not in ROLES:
        raise ReviewError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    with unavailable(f"saving user {name}"), engine.begin() as conn:
        updated = conn.execute(
            sa.update(users)
            .where(users.c.name == name)
            .values(role=role, password_hash=password_hash, session_gen=users.c.session_gen + 1)
        ).rowcount
        if updated:
            return False
        conn.execute(sa.insert(users).values(name=name, role=role, password_hash=password_hash))
        return True


def get_user(engine: Engine, name: str) -> User | None:
    c = users.c
    query = sa.select(c.name, c.role, c.password_hash, c.session_gen)
    with unavailable("reading a user"), engine.connect() as conn:
        row = conn.execute(query.where(c.name == name)).first()
    if row is None:
        return None
    return User(row.name, row.role, row.password_hash, int(row.session_gen))


def end_sessions(engine: Engine, name: str) -> None:
    """Invalidate every session of `name` (logout: on every device at once)."""
    with unavailable(f"ending the sessions of {name}"), engine.begin() as conn:
        conn.execute(
            sa.update(users).where(users.c.name == name).values(session_gen=users.c.session_gen + 1)
        )


def count_attempts(
    engine: Engine, keys: Sequence[str], now: datetime, window_until: datetime
) -> dict[str, int]:
    """Count one log-in attempt under each key and return the counts, including this one.

    One upsert per key, so concurrent attempts are serialised by the row lock and each sees a
    distinct count: no burst of parallel guesses can pass under the limit. A row whose window
    has ended starts again at 1 with a new window. Keys are taken in sorted order so two
    attempts never wait on each other's rows in opposite orders; a deadlock PostgreSQL still
    reports (two first inserts of a key racing) rolls the transaction back, so it is retried.
    """
    t = login_attempts

    def once() -> dict[str, int]:
        counts: dict[str, int] = {}
        with unavailable("counting a log-in attempt"), engine.begin() as conn:
            for key in sorted(set(keys)):
                ins = dialect_insert(conn, t).values(key=key, attempts=1, window_until=window_until)
                expired = t.c.window_until <= now
                stmt = ins.on_conflict_do_update(
                    index_elements=[t.c.key],
                    set_={
                        "attempts": sa.case((expired, 1), else_=t.c.attempts + 1),
                        "window_until": sa.case((expired, window_until), else_=t.c.window_until),
                    },
                ).returning(t.c.attempts)
                counts[key] = int(conn.execute(stmt).scalar_one())
        return counts

    return _retried(once)


def forgive_attempt(engine: Engine, pair: str, address: str, now: datetime) -> None:
    """A right password: forget the name's count at this address, take this attempt back
    from the address's count (so a busy office's log-ins do not spend it; only failures
    do), and drop every count whose window has ended.

    The two keys are touched in the same sorted order `count_attempts` uses; expired rows go
    in a transaction of their own that skips rows another attempt holds, so a log-in never
    waits on, or deadlocks with, the attempts running beside it."""
    t = login_attempts

    def once() -> None:
        with unavailable("clearing log-in attempts"), engine.begin() as conn:
            for key in sorted({pair, address}):
                if key == pair:
                    conn.execute(sa.delete(t).where(t.c.key == pair))
                else:
                    conn.execute(
                        sa.update(t)
                        .where(t.c.key == address, t.c.attempts > 0)
                        .values(attempts=t.c.attempts - 1)
                    )
        with unavailable("clearing expired log-in attempts"), engine.begin() as conn:
            expired = sa.select(t.c.key).where(t.c.window_until <= now)
            if conn.dialect.name == "postgresql":
                expired = expired.with_for_update(skip_locked=True)
            conn.execute(sa.delete(t).where(t.c.key.in_(expired.scalar_subquery())))

    _retried(once)


def _retried(work: Callable[[], T], attempts: int = 3) -> T:
    """`work` again after a transient failure (a deadlock rolled back), at most `attempts`
    times: every transaction here is all-or-nothing, so a retry never counts twice."""
    for attempt in range(attempts):
        try:
            return work()
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def list_users(engine: Engine) -> list[tuple[str, str]]:
    with unavailable("listing users"), engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(sa.select(users.c.name, users.c.role))]
