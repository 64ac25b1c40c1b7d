"""Moderator review console: users, review queue with leases, audit, final decisions.

Revision ID: 0005_console
Revises: 0003_backfill_checkpoints
Create Date: 2026-12-02

Mirrors the "review console" block of modq/store/schema.py (docs/console.md). `reviews` is
append-only; `review_jobs` holds the queue and the lease (`claimed_by`, `claimed_until`);
`listing_decisions` the human decision that settles a listing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_console"
down_revision: str | Sequence[str] | None = "0004_one_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
PENDING = sa.text("decided_at IS NULL")


def _now() -> sa.TextClause:
    if op.get_context().dialect.name == "sqlite":
        return sa.text("(strftime('%Y-%m-%d %H:%M:%f000', 'now'))")
    return sa.text("now()")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigId, sa.Identity(), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", Timestamp),
        sa.Column("created_at", Timestamp, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.CheckConstraint(_in("role", ("moderator", "lead", "admin")), name=op.f("ck_users_role")),
    )
    op.create_table(
        "review_jobs",
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("verdict_id", BigId, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("enqueued_at", Timestamp, nullable=False),
        sa.Column("claimed_by", sa.Text),
        sa.Column("claimed_until", Timestamp),
        sa.Column("decided_at", Timestamp),
        sa.PrimaryKeyConstraint("listing_id", name="pk_review_jobs"),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.listing_id"], name="fk_review_jobs_listing_id_listings"
        ),
        sa.ForeignKeyConstraint(
            ["verdict_id"], ["verdicts.id"], name="fk_review_jobs_verdict_id_verdicts"
        ),
    )
    op.create_index(
        "ix_review_jobs_pending",
        "review_jobs",
        ["queue", sa.text("severity DESC"), "enqueued_at", "listing_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_review_jobs_leased",
        "review_jobs",
        ["claimed_until", "claimed_by"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    decisions = ("approve", "reject", "recategorise", "escalate", "skip")
    op.create_table(
        "reviews",
        sa.Column("id", BigId, sa.Identity(), nullable=False),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("verdict_id", BigId, nullable=False),
        sa.Column("moderator", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text),
        sa.Column("new_category", sa.Text),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.listing_id"], name="fk_reviews_listing_id_listings"
        ),
        sa.ForeignKeyConstraint(
            ["verdict_id"], ["verdicts.id"], name="fk_reviews_verdict_id_verdicts"
        ),
        sa.CheckConstraint(_in("decision", decisions), name=op.f("ck_reviews_decision")),
    )
    op.create_index("ix_reviews_listing_id_created_at", "reviews", ["listing_id", "created_at"])
    op.create_index("ix_reviews_moderator_created_at", "reviews", ["moderator", "created_at"])
    op.create_index("ix_reviews_created_at", "reviews", ["created_at"])
    op.create_table(
        "listing_decisions",
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("review_id", BigId, nullable=False),
        sa.Column("final_decision", sa.Text, nullable=False),
        sa.Column("final_category", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text),
        sa.Column("decided_by", sa.Text, nullable=False),
        sa.Column("decided_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("listing_id", name="pk_listing_decisions"),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.listing_id"], name="fk_listing_decisions_listing_id_listings"
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name="fk_listing_decisions_review_id_reviews"
        ),
        sa.CheckConstraint(
            _in("final_decision", ("approve", "reject", "recategorise")),
            name=op.f("ck_listing_decisions_final_decision"),
        ),
    )
    op.create_index(
        "ix_listing_decisions_final_decision_decided_at",
        "listing_decisions",
        ["final_decision", "decided_at"],
    )
    op.create_index("ix_listing_decisions_decided_at", "listing_decisions", ["decided_at"])
    op.create_index("ix_listings_seller_id", "listings", ["seller_id"])


def downgrade() -> None:
    op.drop_index("ix_listings_seller_id", table_name="listings")
    op.drop_table("listing_decisions")
    op.drop_table("reviews")
    op.drop_table("review_jobs")
    op.drop_table("users")
