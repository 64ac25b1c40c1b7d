"""Intake: every listing `submit` accepted, durable before its message is published.

Revision ID: 0007_intake
Revises: 0004_one_schema
Create Date: 2026-12-02

Mirrors `intake` in modq/store/schema.py. The worker marks a row done in the transaction that
stores the listing's verdict or its rejection; `modq recover` re-publishes rows left open
(docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_intake"
down_revision: str | Sequence[str] | None = "0006_bank_provenance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def _now() -> sa.TextClause:
    if op.get_context().dialect.name == "sqlite":
        # Microseconds in SQLAlchemy's SQLite format, as in 0001_initial_schema.
        return sa.text("(strftime('%Y-%m-%d %H:%M:%f000', 'now'))")
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "intake",
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("listing_version", sa.Integer, nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default="new"),
        sa.Column("accepted_at", Timestamp, nullable=False, server_default=_now()),
        sa.Column("done_at", Timestamp),
        sa.PrimaryKeyConstraint("listing_id", "listing_version", name="pk_intake"),
        sa.CheckConstraint("source IN ('new', 'backfill')", name=op.f("ck_intake_source")),
    )
    op.create_index(op.f("ix_intake_done_at_accepted_at"), "intake", ["done_at", "accepted_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_intake_done_at_accepted_at"), table_name="intake")
    op.drop_table("intake")
