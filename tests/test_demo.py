"""`modq demo` on the embedded fallback (SQLite + Kombu's filesystem broker): what `make demo`
does on a machine with neither Redis nor PostgreSQL, with a real worker process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.system  # `modq demo` end to end: a real worker process on the shipped model
def test_demo_runs_on_the_embedded_fallback_and_writes_only_its_data_dir(
    tmp_path: Path, datasets_dir: Path, shipped_model: Path
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "MODQ_BROKER_URL": "filesystem://",
        "MODQ_DATABASE_URL": f"sqlite:///{data / 'demo.sqlite'}",
        "MODQ_DATA_DIR": str(data),
        "MODQ_DATASETS_DIR": str(datasets_dir),
        "MODQ_MODEL_PATH": str(shipped_model),
    }
    out = subprocess.run(
        [sys.executable, "-m", "modq", "demo", "--listings", "6", "--timeout", "120"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # Six listings plus the one whose photo is missing; the unknown category never gets in.
    assert "7 verdicts:" in out.stdout, out.stdout
    assert "rejected: unknown category 'pets.dog'" in out.stdout
    assert "image_unreadable: photo 0: no such file" in out.stdout
    assert "summary:" in out.stdout
    # It ends with the review console's address and a demo moderator login.
    assert "review console: run" in out.stdout and "demo / demo-password" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_demo_uses_a_database_of_its_own_never_postgres(tmp_path: Path) -> None:
    """On a local PostgreSQL the demo creates and uses its own database (here a throw-away
    name), not the server's `postgres` maintenance database."""
    import uuid

    from modq.cli.demo import choose_backends
    from modq.settings import Settings
    from tests.conftest import PG_ADMIN_URL, drop_database

    name = f"modq_demo_{uuid.uuid4().hex[:8]}"
    # As if MODQ_DATABASE_URL were unset, on the tests' server.
    values = {**Settings(data_dir=tmp_path).model_dump(), "database_url": PG_ADMIN_URL}
    settings = Settings.model_construct(_fields_set={"data_dir"}, **values)
    chosen = choose_backends(settings, database=name)
    try:
        assert chosen.database_url.endswith(f"/{name}")
        assert chosen.database_url.rsplit("/", 1)[0] == PG_ADMIN_URL.rsplit("/", 1)[0]
        assert choose_backends(settings, database=name).database_url == chosen.database_url
    finally:
        drop_database(chosen.database_url)
