"""Verdict reasons as JSON objects, filtered by code through a GIN index.

Revision ID: 0010_structured_reasons
Revises: 0009_hash_watermarks
Create Date: 2026-12-07

Mirrors modq/store/schema.py (docs/storage.md, "Reasons"):
- Every verdict's `reasons` becomes an array of objects (`{"code": "nudity", "photo": 0,
  "label": "nudity.nsfw", "score": 0.91, "threshold": 0.9, "action": "reject"}`). Rows written
  before hold strings ("nudity: photo 0: nudity.nsfw 0.910 >= reject threshold 0.9"); they are
  read with `modq.domain.reasons.parse_legacy`, the one reader of those strings, in batches of
  `_BATCH` rows by id, on PostgreSQL and SQLite alike. Downgrading writes each object's
  `Reason.text()`, the same sentence.
- On PostgreSQL the trigram index of 0008 (for `reasons::text LIKE '%"code:%'`) gives way to a
  GIN jsonb_path_ops index, which serves `reasons @> '[{"code": "nudity"}]'`
  (`modq.store.queries.reason_code_condition`). SQLite (the demo) scans, as before.

`alembic upgrade head --sql` (offline) cannot run the conversion; it prints a note instead, and
rows left with strings still read correctly (`Reason.read`) but are missed by the code filter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from modq.domain.reasons import Reason, parse_legacy

revision: str = "0010_structured_reasons"
down_revision: str | Sequence[str] | None = "0009_hash_watermarks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRGM_INDEX = "ix_verdicts_reasons_trgm"
CODES_INDEX = "ix_verdicts_reasons_codes"
_BATCH = 5000


def _pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _rewrite(first_is: str, convert: Callable[[Any], Any]) -> None:
    """Rewrite, batch by batch in id order, the rows whose first reason is of JSON type
    `first_is` (old rows are all strings or all objects: one writer made each)."""
    if context.is_offline_mode():
        op.execute(f"-- 0010_structured_reasons: convert verdicts.reasons ({first_is}) by hand")
        return
    conn = op.get_bind()
    verdicts = sa.table("verdicts", sa.column("id", sa.BigInteger), sa.column("reasons"))
    if _pg():
        kind = sa.func.jsonb_typeof(sa.literal_column("reasons -> 0"))
        wanted = {"str": "string", "obj": "object"}[first_is]
    else:
        kind = sa.func.json_type(sa.literal_column("reasons"), "$[0]")
        wanted = {"str": "text", "obj": "object"}[first_is]
    last = -1
    while True:
        rows = conn.execute(
            sa.select(verdicts.c.id, sa.cast(verdicts.c.reasons, sa.Text))
            .where(verdicts.c.id > last, kind == wanted)
            .order_by(verdicts.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        update = sa.text(
            "UPDATE verdicts SET reasons = CAST(:reasons AS JSONB) WHERE id = :id"
            if _pg()
            else "UPDATE verdicts SET reasons = :reasons WHERE id = :id"
        )
        conn.execute(
            update,
            [
                {"id": id_, "reasons": json.dumps([convert(r) for r in json.loads(text)])}
                for id_, text in rows
            ],
        )


def _to_object(value: Any) -> Any:
    return parse_legacy(value).stored() if isinstance(value, str) else value


def _to_text(value: Any) -> Any:
    return Reason.read(value).text() if isinstance(value, dict) else value


def upgrade() -> None:
    _rewrite("str", _to_object)
    if _pg():
        op.drop_index(TRGM_INDEX, table_name="verdicts")
        op.create_index(
            CODES_INDEX,
            "verdicts",
            ["reasons"],
            postgresql_using="gin",
            postgresql_ops={"reasons": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if _pg():
        op.drop_index(CODES_INDEX, table_name="verdicts")
        op.create_index(
            TRGM_INDEX,
            "verdicts",
            [sa.text("(reasons::text)")],
            postgresql_using="gin",
            postgresql_ops={"(reasons::text)": "gin_trgm_ops"},
        )
    _rewrite("obj", _to_text)
