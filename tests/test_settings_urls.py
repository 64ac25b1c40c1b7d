"""MODQ_DATABASE_URL in the form every PostgreSQL provider hands out works (issue 12)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from modq.settings import Settings
from modq.store.database import make_engine


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://user@host/db", "postgresql+psycopg2://user@host/db"),
        (
            "postgres://u:p@host:5433/db?sslmode=require",
            "postgresql+psycopg2://u:p@host:5433/db?sslmode=require",
        ),
        ("PostgreSQL://user@host/db", "postgresql+psycopg2://user@host/db"),
        ("postgresql+psycopg2://user@host/db", "postgresql+psycopg2://user@host/db"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://user@host/db"),
        ("sqlite:///demo.db", "sqlite:///demo.db"),
    ],
)
def test_bare_postgresql_urls_get_the_installed_driver(given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


def test_the_environment_form_reaches_a_real_server(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    bare = "postgresql://" + pg_url.split("://", 1)[1]
    monkeypatch.setenv("MODQ_DATABASE_URL", bare)
    engine = make_engine(Settings().database_url)  # what the worker and CLI call
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
        assert engine.dialect.driver == "psycopg2"
    finally:
        engine.dispose()
