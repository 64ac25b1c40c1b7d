"""The Alembic migrations build, remove and rebuild the schema on PostgreSQL and on SQLite,
and worker/schema.py stays an exact mirror of what they build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from modq.settings import REPO_ROOT
from modq.store.database import alembic_config
from modq.store.schema import metadata
from modq.store.verdicts import downgrade, migrate
from tests.conftest import create_database, drop_database

OWN_TABLES = {"listings", "verdicts", "rejected_events"}
OWN_INDEXES = {
    "listings": {
        "ix_listings_declared_category",
        "ix_listings_updated_at",
        "ix_listings_current_verdict_id",
    },
    "verdicts": {
        "ix_verdicts_decision_created_at",
        "ix_verdicts_declared_category_created_at",
        "ix_verdicts_listing_id_created_at",
    },
    "rejected_events": {"ix_rejected_events_received_at"},
}


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'modq.db'}"
        return
    url = create_database("modq_test_migr")
    yield url
    drop_database(url)


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migrations must form one linear chain, found heads {heads}"
    return heads[0]


def _db_revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_migrations_form_one_linear_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revisions = list(script.walk_revisions())
    assert revisions[-1].revision == "0001_initial_schema"
    for rev in revisions:
        assert not rev.is_merge_point, f"{rev.revision} merges branches; keep the chain linear"
    assert _head_revision() == revisions[0].revision


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    migrate(empty_url)
    assert _tables(empty_url) >= OWN_TABLES | {"alembic_version"}
    assert _db_revision(empty_url) == _head_revision()
    engine = sa.create_engine(empty_url)
    inspector = sa.inspect(engine)
    for table, expected in OWN_INDEXES.items():
        assert expected <= {ix["name"] for ix in inspector.get_indexes(table)}
    uniques = {
        uq["name"]: uq["column_names"] for uq in inspector.get_unique_constraints("verdicts")
    }
    assert uniques["uq_verdicts_key"] == [
        "listing_id", "listing_version", "model_version", "policy_version"
    ]  # fmt: skip
    fks = {fk["referred_table"] for fk in inspector.get_foreign_keys("listings")}
    assert fks == {"verdicts"}
    engine.dispose()

    downgrade(empty_url, "base")
    assert _tables(empty_url) <= {"alembic_version"}
    assert _db_revision(empty_url) is None

    migrate(empty_url)
    assert _tables(empty_url) >= OWN_TABLES
    assert _db_revision(empty_url) == _head_revision()


def test_schema_module_mirrors_migrations(empty_url: str) -> None:
    """worker/schema.py builds the queries; it must describe what the migrations created."""
    migrate(empty_url)
    engine = sa.create_engine(empty_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    def touches_own_table(diff: object) -> bool:
        # Tables added by later migrations and not described in worker/schema.py are not ours.
        text = repr(diff)
        return any(f"'{name}'" in text or f"{name}." in text for name in OWN_TABLES) and not (
            isinstance(diff, tuple) and diff[0] == "remove_table"
        )

    assert [d for d in diffs if touches_own_table(d)] == []


def test_alembic_ini_points_at_this_repository() -> None:
    cfg = alembic_config("sqlite://")
    assert Path(cfg.get_main_option("script_location") or "") == REPO_ROOT / "migrations"
    assert (REPO_ROOT / "migrations" / "versions" / "0001_initial_schema.py").is_file()
