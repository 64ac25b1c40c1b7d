"""One schema: every table now lives in `modq.store.schema.metadata`.

Revision ID: 0004_one_schema
Revises: 0003_backfill_checkpoints
Create Date: 2026-12-02

The image-bank tables used to be declared in a module of their own, with their own MetaData that
Alembic did not target, and that copy lacked `ix_photo_hashes_seen_at` (the index the worker's
load of the recent-photo window relies on). Migration 0002 created the index, but a database
whose bank tables were built from that copy has none. This revision makes sure the index exists,
so every database at head matches the single metadata exactly (tests/test_migrations.py compares
every table, index and constraint).

It also renames three check constraints on PostgreSQL. Migration 0001 passed full names
("ck_verdicts_source") where Alembic applies the metadata's naming convention again, so the
database holds "ck_verdicts_ck_verdicts_source" while the metadata says "ck_verdicts_source".
SQLite (the demo's fallback) cannot rename a constraint and keeps the long names; nothing
refers to them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_one_schema"
down_revision: str | Sequence[str] | None = "0003_backfill_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_photo_hashes_seen_at"
# (table, name 0001 produced, the metadata's name)
CHECKS = [
    ("verdicts", "ck_verdicts_ck_verdicts_decision", "ck_verdicts_decision"),
    ("verdicts", "ck_verdicts_ck_verdicts_source", "ck_verdicts_source"),
    ("rejected_events", "ck_rejected_events_ck_rejected_events_stage", "ck_rejected_events_stage"),
]


def _rename_checks(pairs: list[tuple[str, str, str]]) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table, old, new in pairs:
        if old in {ck["name"] for ck in inspector.get_check_constraints(table)}:
            op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT "{old}" TO "{new}"')


def upgrade() -> None:
    indexes = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("photo_hashes")}
    if INDEX not in indexes:
        op.create_index(op.f(INDEX), "photo_hashes", ["seen_at"])
    _rename_checks(CHECKS)


def downgrade() -> None:
    # The index belongs to 0002's schema as well: going back to 0003 keeps it.
    _rename_checks([(table, new, old) for table, old, new in CHECKS])
