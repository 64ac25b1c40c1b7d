"""Database plumbing shared by the store and the CLI: engines, error translation, migrations.

PostgreSQL is the first-class target; SQLite (a file) is the demo's fallback when no server is
reachable, and everything here works on both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from modq.domain.events import as_utc
from modq.errors import ConfigError, StoreUnavailable, UsageError

__all__ = ["Engine", "as_utc", "connected", "make_engine", "migrate", "unavailable"]

_TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # connection pool exhausted
)


def _json_default(obj: object) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars from the model's outputs
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def _clean(obj: Any) -> Any:
    """PostgreSQL refuses NUL in text and NaN/Infinity in JSONB: replace them, lose nothing else."""
    if isinstance(obj, str):
        return obj.replace("\x00", "\ufffd")
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def json_dumps(obj: Any) -> str:
    """The engines' JSON serialiser: tuples become lists, pydantic models and numpy work."""
    text = json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    # Cheap check first; the rewrite is only paid by the rare value that needs it.
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        text = json.dumps(_clean(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
    return text


def clean_text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL or a lone surrogate: replace them rather than fail the
    whole batch (a rejection must be recordable whatever the rejected event held)."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for the worker and the CLI: checked connections, bounded pool, our JSON."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": json_dumps}
    if parsed.get_backend_name() == "postgresql":
        kwargs.update(pool_size=5, max_overflow=5, pool_timeout=10, pool_recycle=1800)
        if parsed.get_driver_name() in ("psycopg2", "psycopg"):
            # Fail fast when the server is unreachable rather than hang on TCP.
            kwargs["connect_args"] = {"connect_timeout": 5, "application_name": "modq"}
    sqlite_path = _sqlite_file(url)
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(_missing_driver(parsed.drivername, exc.name or "")) from exc
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# The DB-API modules SQLAlchemy may ask for, and the package that provides each.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
}


def _missing_driver(drivername: str, module: str) -> str:
    package = _DRIVER_PACKAGES.get(module, module)
    return (
        f"MODQ_DATABASE_URL asks for the {drivername!r} driver, whose module {module!r} is not "
        f"installed: pip install '{package}', or use postgresql:// (psycopg2, which modq "
        "installs)"
    )


@contextmanager
def connected(url: str) -> Iterator[Engine]:
    """An engine for one command (the CLI, an export), disposed when the command is done."""
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Raise errors that may pass (lost connection, deadlock, full pool) as StoreUnavailable."""
    try:
        yield
    except _TRANSIENT as exc:
        # The DBAPI message, not SQLAlchemy's, which would repeat a 64-row statement.
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise StoreUnavailable(f"database unavailable while {what}: {reason}") from exc


def alembic_config(url: str) -> Config:
    """Alembic's configuration for `url`: the migrations ship inside the package
    (`modq/store/migrations`), so this works from an installed wheel and any folder. No ini
    file is read; `alembic.ini` at the checkout's root is for developers' `alembic` command."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("timezone", "UTC")
    # configparser interpolation: a literal % (URL-encoded passwords) must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(url: str, revision: str = "head") -> str | None:
    """Bring the database at `url` up to `revision` (what `modq migrate` runs) and return the
    revision it is at afterwards: an upgrade never goes back, so asking for a revision older
    than the current one leaves the database where it is, and the caller can say so."""
    sqlite_path = _sqlite_file(url)
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(url)
    _check_revision(cfg, revision)
    make_engine(url).dispose()  # a missing driver is one clear line, not Alembic's traceback
    with unavailable(f"migrating to {revision}"):
        command.upgrade(cfg, revision)
    return current_revision(url)


def revisions() -> list[str]:
    """Every migration's revision id, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def head_revision() -> str:
    return revisions()[-1]


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None: no migration applied yet)."""
    engine = make_engine(url)
    try:
        with unavailable("reading the schema revision"), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _check_revision(cfg: Config, revision: str) -> None:
    script = ScriptDirectory.from_config(cfg)
    try:
        found = script.get_revision(revision)
    except AlembicError as exc:
        raise UsageError(
            f"cannot resolve revision {revision!r} ({exc}); known: {', '.join(revisions())}"
        ) from exc
    if found is None and revision not in ("base", "heads"):
        raise UsageError(f"unknown revision {revision!r}; known: {', '.join(revisions())}")


def downgrade(url: str, revision: str) -> None:
    """Take the database at `url` down to `revision` ("base" removes every table)."""
    with unavailable(f"downgrading to {revision}"):
        command.downgrade(alembic_config(url), revision)


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which offers ON CONFLICT (both PostgreSQL and SQLite do)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise ConfigError(f"unsupported database {conn.dialect.name!r}: use PostgreSQL or SQLite")


def sibling_database(url: str, name: str) -> str:
    """`url` with another database name on the same server (credentials kept)."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database `url` names when it does not exist (connecting to the
    server's `postgres` maintenance database with the same credentials); True if created."""
    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "postgresql" or not name:
        raise ConfigError(f"not a PostgreSQL database URL: {parsed!r}")
    admin = make_engine(sibling_database(url, "postgres"))
    try:
        with unavailable(f"creating database {name}"):
            with admin.connect() as conn:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
            if exists:
                return False
            quoted = admin.dialect.identifier_preparer.quote_identifier(name)
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def database_answers(url: str, timeout_s: int = 2) -> bool:
    """Whether a connection to `url` can be opened now (the demo's fallback choice)."""
    is_pg = make_url(url).get_backend_name() == "postgresql"
    engine = sa.create_engine(url, connect_args={"connect_timeout": timeout_s} if is_pg else {})
    try:
        with engine.connect():
            return True
    except sa_exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()
