"""The database schema as SQLAlchemy Core tables, used by the store to build queries.

The tables are created and changed only by the Alembic migrations in `migrations/versions/`;
this module mirrors them (and serves as the target for `alembic revision --autogenerate`
comparisons). PostgreSQL is the first-class target; the same schema runs on SQLite so the demo
works without a server, hence JSON that becomes JSONB on PostgreSQL and integer ids that
become SQLite's rowid alias.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from modq.domain.review import FINAL_DECISIONS, HUMAN_DECISIONS, ROLES
from modq.domain.verdicts import DECISIONS, SOURCES, STAGES

# Names every constraint and index predictably, so migrations can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
# The review row that takes back an earlier one (never a decision a moderator picks).
UNDO = "undo"

# JSONB on PostgreSQL (indexable, compact); plain JSON text on SQLite.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# BIGINT identity on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


listings = sa.Table(
    "listings",
    metadata,
    sa.Column("listing_id", sa.Text, primary_key=True),
    # Version of the newest event seen; an older redelivery never overwrites the row.
    sa.Column("listing_version", sa.Integer, nullable=False),
    sa.Column("declared_category", sa.Text, nullable=False),
    sa.Column("seller_id", sa.Text),
    sa.Column("title", sa.Text),
    sa.Column("images", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("first_seen_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column(
        "current_verdict_id",
        BigId,
        # Circular with verdicts.listing_id: created after both tables exist.
        sa.ForeignKey("verdicts.id", use_alter=True, ondelete="SET NULL"),
    ),
    sa.Index(None, "declared_category"),
    sa.Index(None, "updated_at"),
    # Lets "current verdicts with decision X" walk the verdict index and probe listings.
    sa.Index(None, "current_verdict_id"),
)

verdicts = sa.Table(
    "verdicts",
    metadata,
    sa.Column("id", BigId, sa.Identity(), primary_key=True),
    sa.Column("listing_id", sa.Text, sa.ForeignKey("listings.listing_id"), nullable=False),
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
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    # One verdict per listing version x model x policy: the key redeliveries conflict on.
    sa.UniqueConstraint(
        "listing_id", "listing_version", "model_version", "policy_version", name="uq_verdicts_key"
    ),
    sa.CheckConstraint(_in("decision", DECISIONS), name="decision"),
    sa.CheckConstraint(_in("source", SOURCES), name="source"),
    sa.Index(None, "decision", "created_at"),
    sa.Index(None, "declared_category", "created_at"),
    sa.Index(None, "listing_id", "created_at"),
)
# Filtering by reason code (`modq.store.queries.reason_code_condition`, JSONB containment
# `reasons @> '[{"code": ...}]'`): a GIN index, PostgreSQL only (0010_structured_reasons);
# SQLite scans.
sa.Index(
    "ix_verdicts_reasons_codes",
    verdicts.c.reasons,
    postgresql_using="gin",
    postgresql_ops={"reasons": "jsonb_path_ops"},
).ddl_if(dialect="postgresql")

rejected_events = sa.Table(
    "rejected_events",
    metadata,
    sa.Column("id", BigId, sa.Identity(), primary_key=True),
    sa.Column("received_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("listing_id", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.CheckConstraint(_in("stage", STAGES), name="stage"),
    sa.Index(None, "received_at"),
)

# One row per `modq backfill` job (migration 0003_backfill_checkpoints): the checkpoint that
# lets a killed backfill continue where it stopped. The cursor and the counts advance in one
# transaction after each published page.
backfill_jobs = sa.Table(
    "backfill_jobs",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    # What the job selects (filters, input file digest, deployed model and policy versions).
    sa.Column("selection", Json, nullable=False),
    # Position after the last published page: a listing id (table, ids file) or a line number
    # (export file). Null: nothing published yet.
    sa.Column("last_listing_id", sa.Text),
    sa.Column("last_line", sa.Integer),
    sa.Column("queued", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("already_current", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_selected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", Timestamp),
)

# Image banks (migration 0002_image_banks): named sets of PDQ hashes of banned photos, and the
# hash of every moderated photo with its seller for the duplicate-photo check. Provenance and
# switches (migration 0006_bank_provenance): each hash's content id and note as the exchange
# that published it gave them, and `enabled` on banks and hashes (disabled ones never match).

image_banks = sa.Table(
    "image_banks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
)
bank_hashes = sa.Table(
    "bank_hashes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "bank_id", BigId, sa.ForeignKey("image_banks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sa.Column("quality", sa.Integer, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("added_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("content_id", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.UniqueConstraint("bank_id", "hash"),
    # `modq bank remove|disable --content-id`.
    sa.Index(None, "bank_id", "content_id"),
)
photo_hashes = sa.Table(
    "photo_hashes",
    metadata,
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("photo_index", sa.Integer, primary_key=True),
    sa.Column("listing_version", sa.Integer, nullable=False),
    sa.Column("seller_id", sa.Text),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sa.Column("quality", sa.Integer, nullable=False),
    sa.Column("seen_at", Timestamp, nullable=False, server_default=sa.func.now()),
    # Position in `index_counters` 'photo_hashes' order, set on every insert and update
    # (migration 0009_hash_watermarks): the per-host index loads the rows above its watermark.
    sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
    # The worker's first load reads the recent window by seen_at; refreshes read by seq.
    sa.Index(None, "seen_at"),
    sa.Index(None, "seq"),
)

# Counters the per-host indexes poll (migration 0009_hash_watermarks): 'photo_hashes' is the
# last seq handed to a photo_hashes row, 'banks' moves with every bank edit. A writer updates
# its counter row in its own transaction, so the row lock orders the writers: no row with a
# lower seq can commit after one with a higher seq (docs/scaling.md).
index_counters = sa.Table(
    "index_counters",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
)


# ---- Moderator review console (migration 0005_console, docs/console.md) ------------------
# Accounts, the review queue with its leases, the append-only audit of human decisions and
# each listing's final (human) decision, side by side with the machine's verdicts.

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigId, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id, PHC string
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    # Sessions carry the generation they were issued under; bumping it (logout, password
    # reset, role change) ends them all (migration 0008_console_sessions).
    sa.Column("session_gen", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint(_in("role", ROLES), name="role"),
)

# Failed-login counters, one row per key ("name:<name>@<address>" or "addr:<address>"),
# counted before the password is checked; a row is void once `window_until` has passed.
login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("window_until", Timestamp, nullable=False),
    sa.Index(None, "window_until"),
)

# One row per listing that a `review` verdict sent to a moderator. `claimed_by` and
# `claimed_until` are the lease: a claim takes the row with FOR UPDATE SKIP LOCKED, and an
# expired lease puts it back in the queue. `decided_at` set: the job is done.
review_jobs = sa.Table(
    "review_jobs",
    metadata,
    sa.Column("listing_id", sa.Text, sa.ForeignKey("listings.listing_id"), primary_key=True),
    sa.Column("verdict_id", BigId, sa.ForeignKey("verdicts.id"), nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("severity", sa.Integer, nullable=False),
    sa.Column("enqueued_at", Timestamp, nullable=False),
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_until", Timestamp),
    sa.Column("decided_at", Timestamp),
    # The pending part of each queue in claim order (severity, then age, then id: the whole
    # ORDER BY, so a claim or a queue page reads the first rows and sorts nothing).
    sa.Index(
        "ix_review_jobs_pending",
        "queue",
        sa.text("severity DESC"),
        "enqueued_at",
        "listing_id",
        postgresql_where=sa.text("decided_at IS NULL"),
        sqlite_where=sa.text("decided_at IS NULL"),
    ),
    # The queue page sorted by age alone, either way (migration 0011), without a sort.
    sa.Index(
        "ix_review_jobs_pending_age",
        "queue",
        "enqueued_at",
        "listing_id",
        postgresql_where=sa.text("decided_at IS NULL"),
        sqlite_where=sa.text("decided_at IS NULL"),
    ),
    # Leases in force (the "being reviewed" counts, a moderator's own claim).
    sa.Index(
        "ix_review_jobs_leased",
        "claimed_until",
        "claimed_by",
        postgresql_where=sa.text("decided_at IS NULL"),
        sqlite_where=sa.text("decided_at IS NULL"),
    ),
)

# Append-only audit: who decided what, when, about which verdict (never updated or deleted).
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", BigId, sa.Identity(), primary_key=True),
    sa.Column("listing_id", sa.Text, sa.ForeignKey("listings.listing_id"), nullable=False),
    sa.Column("verdict_id", BigId, sa.ForeignKey("verdicts.id"), nullable=False),
    sa.Column("moderator", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
    sa.Column("new_category", sa.Text),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    # Migration 0011: the moderator's note, the photo indexes they marked as not showing the
    # reason (negatives for the export), and for an "undo" row the review it takes back.
    sa.Column("note", sa.Text),
    sa.Column("not_showing", Json),
    sa.Column("undoes", BigId, sa.ForeignKey("reviews.id")),
    sa.CheckConstraint(_in("decision", (*HUMAN_DECISIONS, UNDO)), name="decision"),
    sa.Index(None, "undoes"),
    sa.Index(None, "listing_id", "created_at"),
    sa.Index(None, "moderator", "created_at"),
    sa.Index(None, "created_at"),
)

# The listing's final decision: the latest settling review (approve/reject/recategorise).
listing_decisions = sa.Table(
    "listing_decisions",
    metadata,
    sa.Column("listing_id", sa.Text, sa.ForeignKey("listings.listing_id"), primary_key=True),
    sa.Column("review_id", BigId, sa.ForeignKey("reviews.id"), nullable=False),
    sa.Column("final_decision", sa.Text, nullable=False),
    sa.Column("final_category", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("decided_at", Timestamp, nullable=False),
    sa.CheckConstraint(_in("final_decision", FINAL_DECISIONS), name="final_decision"),
    sa.Index(None, "final_decision", "decided_at"),
    sa.Index(None, "decided_at"),
)

# Quality checks on human decisions (migration 0012): a lead samples a decided listing for a
# second, blind review ("second": the expected answer is the first moderator's decision) or
# sets a golden one ("golden": the lead's known answer). Both tables are append-only: a check
# is never edited, its one answer is a row of its own (the primary key makes it one).
QUALITY_KINDS: tuple[str, ...] = ("second", "golden")
quality_checks = sa.Table(
    "quality_checks",
    metadata,
    sa.Column("id", BigId, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("listing_id", sa.Text, sa.ForeignKey("listings.listing_id"), nullable=False),
    sa.Column("review_id", BigId, sa.ForeignKey("reviews.id")),
    sa.Column("expected_decision", sa.Text, nullable=False),
    sa.Column("expected_reason", sa.Text),
    sa.Column("first_moderator", sa.Text),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("kind", QUALITY_KINDS), name="kind"),
    sa.CheckConstraint(_in("expected_decision", FINAL_DECISIONS), name="expected_decision"),
    sa.Index(None, "review_id"),
)
quality_answers = sa.Table(
    "quality_answers",
    metadata,
    sa.Column("check_id", BigId, sa.ForeignKey("quality_checks.id"), primary_key=True),
    sa.Column("moderator", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("decision", FINAL_DECISIONS), name="decision"),
)
# A photo of a decided listing a lead chose as the policy page's example of a reason
# (append-only: the page shows the latest few per reason).
policy_examples = sa.Table(
    "policy_examples",
    metadata,
    sa.Column("id", BigId, sa.Identity(), primary_key=True),
    sa.Column("reason_code", sa.Text, nullable=False),
    sa.Column("listing_id", sa.Text, sa.ForeignKey("listings.listing_id"), nullable=False),
    sa.Column("photo_index", sa.Integer, nullable=False),
    sa.Column("chosen_by", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index(None, "reason_code", "created_at"),
)

# Console search by seller.
sa.Index("ix_listings_seller_id", listings.c.seller_id)


# Every listing `submit` accepted (migration 0007_intake), written before its message is
# published: the broker may lose a message (a Redis restart), this table does not. The worker
# sets `done_at` in the transaction that stores the verdict or the rejection; `modq recover`
# re-publishes the rows still open after a while (docs/reliability.md).
intake = sa.Table(
    "intake",
    metadata,
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("listing_version", sa.Integer, primary_key=True),
    # The broker message body, exactly as published: what a recovery re-publishes.
    sa.Column("body", Json, nullable=False),
    sa.Column("source", sa.Text, nullable=False, server_default="new"),
    sa.Column("accepted_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("done_at", Timestamp),
    sa.CheckConstraint(_in("source", SOURCES), name="source"),
    # The recovery scan: open rows, oldest first.
    sa.Index(None, "done_at", "accepted_at"),
)
