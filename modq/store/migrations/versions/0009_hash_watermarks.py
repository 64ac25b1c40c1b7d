"""Watermarks for the per-host hash indexes: `photo_hashes.seq` and `index_counters`.

Revision ID: 0009_hash_watermarks
Revises: 0007_intake
Create Date: 2026-12-07

Mirrors `photo_hashes.seq` and `index_counters` in modq/store/schema.py. Rows that exist
before this migration keep seq 0: a worker's first load reads the whole recent window by
`seen_at`, and refreshes read what comes after (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_hash_watermarks"
down_revision: str | Sequence[str] | None = "0008_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_photo_hashes_seq"


def upgrade() -> None:
    op.add_column(
        "photo_hashes",
        sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index(op.f(INDEX), "photo_hashes", ["seq"])
    counters = op.create_table(
        "index_counters",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_index_counters")),
    )
    op.bulk_insert(counters, [{"name": "photo_hashes", "value": 0}, {"name": "banks", "value": 0}])


def downgrade() -> None:
    op.drop_table("index_counters")
    op.drop_index(op.f(INDEX), table_name="photo_hashes")
    with op.batch_alter_table("photo_hashes") as batch:
        batch.drop_column("seq")
