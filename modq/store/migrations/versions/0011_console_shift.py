"""The console for a whole shift: a note on every decision, photos a moderator marked as not
showing the reason, and undo as a review row of its own.

Revision ID: 0011_console_shift
Revises: 0010_structured_reasons
Create Date: 2026-12-07

Mirrors `reviews.note`, `reviews.not_showing`, `reviews.undoes` and the widened
`ck_reviews_decision` in modq/store/schema.py. An undo is appended, never an UPDATE of the
row it takes back: the audit keeps both. (The lead re-chains this after 0010 at merge.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_console_shift"
down_revision: str | Sequence[str] | None = "0010_structured_reasons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OLD = ("approve", "reject", "recategorise", "escalate", "skip")
NEW = (*OLD, "undo")


def _in(values: tuple[str, ...]) -> str:
    return f"decision IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    # batch: SQLite (the demo's fallback) rebuilds the table to change a CHECK constraint.
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("note", sa.Text))
        batch.add_column(sa.Column("not_showing", Json))
        batch.add_column(sa.Column("undoes", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))
        batch.create_foreign_key(op.f("fk_reviews_undoes_reviews"), "reviews", ["undoes"], ["id"])
        batch.drop_constraint(op.f("ck_reviews_decision"), type_="check")
        batch.create_check_constraint(op.f("ck_reviews_decision"), _in(NEW))
    op.create_index("ix_reviews_undoes", "reviews", ["undoes"])
    # The queue page sorted by age alone (oldest or newest first) reads an index, not a sort.
    pending = sa.text("decided_at IS NULL")
    op.create_index(
        "ix_review_jobs_pending_age",
        "review_jobs",
        ["queue", "enqueued_at", "listing_id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )


def downgrade() -> None:
    op.execute("DELETE FROM reviews WHERE decision = 'undo'")
    op.drop_index("ix_reviews_undoes", table_name="reviews")
    op.drop_index("ix_review_jobs_pending_age", table_name="review_jobs")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_constraint(op.f("ck_reviews_decision"), type_="check")
        batch.create_check_constraint(op.f("ck_reviews_decision"), _in(OLD))
        batch.drop_constraint(op.f("fk_reviews_undoes_reviews"), type_="foreignkey")
        batch.drop_column("undoes")
        batch.drop_column("not_showing")
        batch.drop_column("note")
