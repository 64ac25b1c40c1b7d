"""Initial schema: listings, verdicts (one per listing version x model x policy), rejected events.

Revision ID: 0001_initial_schema
Revises:
Create Date: 2025-11-22

Hand-written to match worker/schema.py. PostgreSQL is the target; the same revision also builds
the SQLite fallback database used by the demo when no server is reachable.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial_schema"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _now() -> sa.TextClause:
    if _is_sqlite():
        # Microseconds in SQLAlchemy's own SQLite format, so text comparisons with bound
        # datetimes (the `since` filter) order correctly; CURRENT_TIMESTAMP has only seconds.
        return sa.text("(strftime('%Y-%m-%d %H:%M:%f000', 'now'))")
    return sa.text("now()")


def upgrade() -> None:
    current_verdict_fk: list[sa.ForeignKeyConstraint] = []
    if _is_sqlite():
        # SQLite cannot add a constraint later; it accepts a reference to a table not yet made.
        current_verdict_fk.append(
            sa.ForeignKeyConstraint(
                ["current_verdict_id"],
                ["verdicts.id"],
                name="fk_listings_current_verdict_id_verdicts",
                ondelete="SET NULL",
            )
        )
    op.create_table(
        "listings",
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("listing_version", sa.Integer, nullable=False),
        sa.Column("declared_category", sa.Text, nullable=False),
        sa.Column("seller_id", sa.Text),
        sa.Column("title", sa.Text),
        sa.Column("images", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("first_seen_at", Timestamp, nullable=False, server_default=_now()),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=_now()),
        sa.Column("current_verdict_id", BigId),
        sa.PrimaryKeyConstraint("listing_id", name="pk_listings"),
        *current_verdict_fk,
    )
    op.create_index("ix_listings_declared_category", "listings", ["declared_category"])
    op.create_index("ix_listings_updated_at", "listings", ["updated_at"])
    op.create_index("ix_listings_current_verdict_id", "listings", ["current_verdict_id"])

    op.create_table(
        "verdicts",
        sa.Column("id", BigId, sa.Identity(), nullable=False),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("listing_version", sa.Integer, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("declared_category", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reasons", Json, nullable=False),
        sa.Column("suggested", Json, nullable=False),
        sa.Column("best_photo", sa.Integer),
        sa.Column("scores", Json, nullable=False),
        sa.Column("photos", Json, nullable=False),
        sa.Column("timings", Json, nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default="new"),
        sa.Column("created_at", Timestamp, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_verdicts"),
        sa.UniqueConstraint(
            "listing_id",
            "listing_version",
            "model_version",
            "policy_version",
            name="uq_verdicts_key",
        ),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject', 'review')", name="ck_verdicts_decision"
        ),
        sa.CheckConstraint("source IN ('new', 'backfill')", name="ck_verdicts_source"),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.listing_id"], name="fk_verdicts_listing_id_listings"
        ),
    )
    # Moderator queues: "everything in review, newest first".
    op.create_index("ix_verdicts_decision_created_at", "verdicts", ["decision", "created_at"])
    # Category leads: "recent verdicts for fashion.shoes".
    op.create_index(
        "ix_verdicts_declared_category_created_at", "verdicts", ["declared_category", "created_at"]
    )
    # Support and audit: "the history of listing X".
    op.create_index("ix_verdicts_listing_id_created_at", "verdicts", ["listing_id", "created_at"])

    if not _is_sqlite():
        op.create_foreign_key(
            "fk_listings_current_verdict_id_verdicts",
            "listings",
            "verdicts",
            ["current_verdict_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "rejected_events",
        sa.Column("id", BigId, sa.Identity(), nullable=False),
        sa.Column("received_at", Timestamp, nullable=False, server_default=_now()),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("listing_id", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_events"),
        sa.CheckConstraint("stage IN ('submit', 'worker')", name="ck_rejected_events_stage"),
    )
    op.create_index("ix_rejected_events_received_at", "rejected_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("rejected_events")
    if not _is_sqlite():
        op.drop_constraint("fk_listings_current_verdict_id_verdicts", "listings", "foreignkey")
    # Dropping a table drops its indexes with it.
    op.drop_table("verdicts")
    op.drop_table("listings")
