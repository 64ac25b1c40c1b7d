"""Console sessions that can be revoked, a lock-out no stranger can trigger, and the search's
reason filter indexed.

Revision ID: 0008_console_sessions
Revises: 0007_intake
Create Date: 2026-12-07

Mirrors modq/store/schema.py (docs/console.md, "Security"):
- `users.session_gen`: every session cookie carries the generation it was issued under; logout,
  a password reset and a role change bump it, which ends every session of that user at once.
  `users.failed_logins` / `locked_until` go: failures are counted per (name, address) and per
  address in `login_attempts`, before the password is checked, so parallel guesses cannot
  overtake the count and a stranger elsewhere cannot lock a moderator out.
- On PostgreSQL a trigram index (pg_trgm) on the verdicts' reasons as text, which serves the
  search's `LIKE '%"code:%'` filter. SQLite (the demo) has no pg_trgm and scans.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_console_sessions"
down_revision: str | Sequence[str] | None = "0007_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
TRGM_INDEX = "ix_verdicts_reasons_trgm"


def _pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_gen", sa.Integer, nullable=False, server_default="0"))
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")
    op.create_table(
        "login_attempts",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("window_until", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_login_attempts"),
    )
    op.create_index("ix_login_attempts_window_until", "login_attempts", ["window_until"])
    if _pg():
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            TRGM_INDEX,
            "verdicts",
            [sa.text("(reasons::text)")],
            postgresql_using="gin",
            postgresql_ops={"(reasons::text)": "gin_trgm_ops"},
        )


def downgrade() -> None:
    if _pg():
        op.drop_index(TRGM_INDEX, table_name="verdicts")
    op.drop_index("ix_login_attempts_window_until", table_name="login_attempts")
    op.drop_table("login_attempts")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locked_until", Timestamp))
        batch.add_column(
            sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0")
        )
        batch.drop_column("session_gen")
