"""Image banks: named sets of banned PDQ hashes, and the PDQ hash of every moderated photo.

Revision ID: 0002_image_banks
Revises: 0001_initial_schema
Create Date: 2026-11-22

Mirrors worker/detectors/bank_store.py. `photo_hashes` keeps one row per listing photo (the
latest version's) with the seller, for the duplicate-photo-by-another-seller check; its
`seen_at` index serves the worker's load of the recent window.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_image_banks"
down_revision: str | Sequence[str] | None = "0001_initial_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "image_banks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_image_banks"),
        sa.UniqueConstraint("name", name="uq_image_banks_name"),
    )
    op.create_table(
        "bank_hashes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("bank_id", BigId, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("quality", sa.Integer, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("added_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_bank_hashes"),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["image_banks.id"],
            name="fk_bank_hashes_bank_id_image_banks",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("bank_id", "hash", name="uq_bank_hashes_bank_id_hash"),
    )
    op.create_table(
        "photo_hashes",
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("photo_index", sa.Integer, nullable=False),
        sa.Column("listing_version", sa.Integer, nullable=False),
        sa.Column("seller_id", sa.Text),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("quality", sa.Integer, nullable=False),
        sa.Column("seen_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("listing_id", "photo_index", name="pk_photo_hashes"),
    )
    op.create_index("ix_photo_hashes_seen_at", "photo_hashes", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_photo_hashes_seen_at", table_name="photo_hashes")
    op.drop_table("photo_hashes")
    op.drop_table("bank_hashes")
    op.drop_table("image_banks")
