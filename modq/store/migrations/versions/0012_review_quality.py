"""Quality checks on human decisions and the policy page's example photos.

Revision ID: 0012_review_quality
Revises: 0011_console_shift
Create Date: 2026-12-08

Mirrors `quality_checks`, `quality_answers` and `policy_examples` in modq/store/schema.py.
All three are append-only: a check's answer is a row of its own, never an UPDATE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_review_quality"
down_revision: str | Sequence[str] | None = "0011_console_shift"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
FINAL = ("approve", "reject", "recategorise")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "quality_checks",
        sa.Column("id", BigId, sa.Identity(), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("review_id", BigId),
        sa.Column("expected_decision", sa.Text, nullable=False),
        sa.Column("expected_reason", sa.Text),
        sa.Column("first_moderator", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_quality_checks"),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.listing_id"], name="fk_quality_checks_listing_id_listings"
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name="fk_quality_checks_review_id_reviews"
        ),
        sa.CheckConstraint(_in("kind", ("second", "golden")), name=op.f("ck_quality_checks_kind")),
        sa.CheckConstraint(
            _in("expected_decision", FINAL), name=op.f("ck_quality_checks_expected_decision")
        ),
    )
    op.create_index("ix_quality_checks_review_id", "quality_checks", ["review_id"])
    op.create_table(
        "quality_answers",
        sa.Column("check_id", BigId, nullable=False),
        sa.Column("moderator", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("check_id", name="pk_quality_answers"),
        sa.ForeignKeyConstraint(
            ["check_id"], ["quality_checks.id"], name="fk_quality_answers_check_id_quality_checks"
        ),
        sa.CheckConstraint(_in("decision", FINAL), name=op.f("ck_quality_answers_decision")),
    )
    op.create_table(
        "policy_examples",
        sa.Column("id", BigId, sa.Identity(), nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("photo_index", sa.Integer, nullable=False),
        sa.Column("chosen_by", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_policy_examples"),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.listing_id"], name="fk_policy_examples_listing_id_listings"
        ),
    )
    op.create_index(
        "ix_policy_examples_reason_code_created_at",
        "policy_examples",
        ["reason_code", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_policy_examples_reason_code_created_at", table_name="policy_examples")
    op.drop_table("policy_examples")
    op.drop_table("quality_answers")
    op.drop_index("ix_quality_checks_review_id", table_name="quality_checks")
    op.drop_table("quality_checks")
