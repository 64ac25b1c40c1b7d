"""The Alembic migrations build, remove and rebuild the schema on PostgreSQL and on SQLite,
and modq/store/schema.py (the one MetaData) stays an exact mirror of what they build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from modq.settings import REPO_ROOT
from modq.store.database import alembic_config, downgrade, migrate
from modq.store.schema import metadata
from tests.conftest import create_database, drop_database

OWN_TABLES = set(metadata.tables)
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


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    url = create_database("modq_test_migr")
    yield url
    drop_database(url)


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
    """modq/store/schema.py is the one schema: after every migration, autogenerate proposes
    nothing (types and server defaults included) for any table."""
    migrate(empty_url)
    engine = sa.create_engine(empty_url)
    try:
        with engine.connect() as conn:
            # SQLite spells now() as CURRENT_TIMESTAMP: defaults are compared on PostgreSQL.
            pg = conn.dialect.name == "postgresql"
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": pg}
            )
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    if not pg:
        # SQLite cannot reflect an expression index ("severity DESC"): Alembic proposes to drop
        # and re-add the same index. Only that pair is forgiven, and only on SQLite.
        removed = {d[1].name for d in diffs if d[0] == "remove_index"}
        added = {d[1].name for d in diffs if d[0] == "add_index"}
        both = removed & added
        diffs = [
            d for d in diffs if not (d[0] in ("remove_index", "add_index") and d[1].name in both)
        ]
        # Indexes declared PostgreSQL-only (`ddl_if`, the GIN index on reasons) are not there.
        diffs = [d for d in diffs if not (d[0] == "add_index" and _pg_only(d[1]))]
    assert diffs == []


def _pg_only(index: sa.Index) -> bool:
    # Autogenerate hands over a copy without the `ddl_if`: look the index up by name.
    declared = {ix.name: ix for table in metadata.sorted_tables for ix in table.indexes}
    ddl_if = getattr(declared.get(index.name), "_ddl_if", None)
    return ddl_if is not None and ddl_if.dialect == "postgresql"


def _named(items: list[Any]) -> set[str]:
    # PostgreSQL reports the index behind each unique constraint too: counted as the constraint.
    return {
        str(item["name"])
        for item in items
        if item.get("name") and not item.get("duplicates_constraint")
    }


def test_every_index_and_constraint_matches(pg_empty_url: str) -> None:
    """Name by name, what autogenerate does not compare (check constraints) included."""
    migrate(pg_empty_url)
    engine = sa.create_engine(pg_empty_url)
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) - {"alembic_version"} == set(metadata.tables)
        for table in metadata.sorted_tables:
            name = table.name
            want_ix = {str(ix.name) for ix in table.indexes}
            assert _named(inspector.get_indexes(name)) == want_ix, name
            want_uq = {str(c.name) for c in table.constraints if isinstance(c, sa.UniqueConstraint)}
            assert _named(inspector.get_unique_constraints(name)) == want_uq, name
            want_fk = {str(fk.name) for fk in table.foreign_key_constraints}
            assert _named(inspector.get_foreign_keys(name)) == want_fk, name
            want_ck = {str(c.name) for c in table.constraints if isinstance(c, sa.CheckConstraint)}
            assert _named(inspector.get_check_constraints(name)) == want_ck, name
            assert inspector.get_pk_constraint(name)["name"] == table.primary_key.name, name
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    """`modq migrate` finds its migrations in the package (an installed wheel has no checkout),
    and the developers' `alembic.ini` points at the same folder."""
    import configparser

    import modq.store

    package_migrations = Path(modq.store.__file__).parent / "migrations"
    cfg = alembic_config("sqlite://")
    assert cfg.config_file_name is None
    assert Path(cfg.get_main_option("script_location") or "") == package_migrations
    assert (package_migrations / "versions" / "0001_initial_schema.py").is_file()
    ini = configparser.ConfigParser()
    ini.read(REPO_ROOT / "alembic.ini")
    here = ini.get("alembic", "script_location", vars={"here": str(REPO_ROOT)})
    assert Path(here) == package_migrations
