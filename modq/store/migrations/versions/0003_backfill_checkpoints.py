"""Backfill checkpoints: one row per `modq backfill` job, so a killed backfill resumes.

Revision ID: 0003_backfill_checkpoints
Revises: 0002_image_banks
Create Date: 2026-11-22

Mirrors `backfill_jobs` in worker/schema.py. The cursor (`last_listing_id` for a walk over
`listings` or an ids file, `last_line` for an export file) and the counts advance together in
one transaction after each page is published (docs/backfill.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_backfill_checkpoints"
down_revision: str | Sequence[str] | None = "0002_image_banks"
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
        "backfill_jobs",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("selection", Json, nullable=False),
        sa.Column("last_listing_id", sa.Text),
        sa.Column("last_line", sa.Integer),
        sa.Column("queued", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("already_current", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_selected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", Timestamp, nullable=False, server_default=_now()),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=_now()),
        sa.Column("finished_at", Timestamp),
        sa.PrimaryKeyConstraint("name", name="pk_backfill_jobs"),
    )


def downgrade() -> None:
    op.drop_table("backfill_jobs")
