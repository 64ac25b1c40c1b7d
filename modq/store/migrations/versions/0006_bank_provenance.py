"""Bank provenance and switches: content id and note per hash, `enabled` on banks and hashes.

Revision ID: 0006_bank_provenance
Revises: 0004_one_schema
Create Date: 2026-12-02

Hashes imported from an exchange (`modq bank import`: HMA, ThreatExchange, NCMEC-style lists)
keep the content id and note the list gave them, and verdict reasons name them. A bank or a
single hash can be switched off without deleting it (`modq bank disable`); the index serves
removing or disabling by content id.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_bank_provenance"
down_revision: str | Sequence[str] | None = "0005_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_bank_hashes_bank_id_content_id"


def upgrade() -> None:
    op.add_column(
        "image_banks", sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true())
    )
    op.add_column("bank_hashes", sa.Column("content_id", sa.Text))
    op.add_column("bank_hashes", sa.Column("note", sa.Text))
    op.add_column(
        "bank_hashes", sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true())
    )
    op.create_index(op.f(INDEX), "bank_hashes", ["bank_id", "content_id"])


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name="bank_hashes")
    with op.batch_alter_table("bank_hashes") as batch:
        batch.drop_column("enabled")
        batch.drop_column("note")
        batch.drop_column("content_id")
    with op.batch_alter_table("image_banks") as batch:
        batch.drop_column("enabled")
