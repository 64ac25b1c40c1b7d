"""Alembic environment for modq: where the database is and how to connect for a migration.

The URL comes from, in order: `alembic -x url=...`, the config's `sqlalchemy.url` (set by
`modq.store.verdicts.migrate` and by the tests), then `modq.settings` (MODQ_DATABASE_URL).
"""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from modq.settings import get_settings
from modq.store.schema import metadata

config = context.config
_LOCK = 0x6D6F6471  # "modq": the advisory lock that serialises concurrent migrations

# Only the Alembic command line configures logging: when an application calls
# modq.store.verdicts.migrate() its own logging setup must survive.
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().database_url
    )


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (`alembic upgrade head --sql`) instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=database_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = sa.create_engine(database_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                # SQLite cannot ALTER most things: later migrations use batch mode there.
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Workers starting together may all call migrate(): one at a time.
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
