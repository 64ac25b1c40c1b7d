"""The `modq` command's contract with scripts and operators: `--version`, exit status 1 when
a command runs and fails (a service down, a missing model, a missing driver, a bad setting),
2 when the command line is wrong, and one clear line instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import create_database, drop_database


def modq(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modq", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_clean_line(done: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert text in done.stderr, done.stderr


def test_version(tmp_path: Path) -> None:
    done = modq("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("modq, version "), done.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    one_clean_line(modq("verdicts", "--bogus", cwd=tmp_path), 2, "No such option")
    one_clean_line(modq("nonsense", cwd=tmp_path), 2, "No such command")


def test_services_down_exit_1(tmp_path: Path, pg_url: str) -> None:
    one_clean_line(
        modq("verdicts", cwd=tmp_path, MODQ_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x"),
        1,
        "modq: error: database unavailable",
    )
    event = '{"listing_id": "a", "declared_category": "electronics.phone", "images": ["a.jpg"]}'
    done = subprocess.run(
        [sys.executable, "-m", "modq", "submit", "-"],
        input=event + "\n",
        cwd=tmp_path,
        env={**os.environ, "MODQ_BROKER_URL": "redis://127.0.0.1:1/0", "MODQ_DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_clean_line(done, 1, "modq: error: broker unavailable")


def test_configuration_errors_exit_1(tmp_path: Path) -> None:
    one_clean_line(modq("verdicts", cwd=tmp_path, MODQ_BATCH_SIZE="many"), 1, "MODQ_BATCH_SIZE")
    one_clean_line(
        modq("migrate", cwd=tmp_path, MODQ_DATABASE_URL="postgresql+psycopg://u@127.0.0.1/x"),
        1,
        "pip install 'psycopg[binary]'",
    )
    one_clean_line(
        modq("worker", "-p", "1", cwd=tmp_path, MODQ_MODEL_PATH=str(tmp_path / "absent.onnx")),
        1,
        "absent",
    )


@pytest.fixture
def empty_db() -> str:
    url = create_database("modq_cli")
    yield url  # type: ignore[misc]
    drop_database(url)


def test_migrate_reports_the_revision_it_reached(tmp_path: Path, empty_db: str) -> None:
    from modq.store.database import head_revision, revisions

    first = revisions()[0]
    done = modq("migrate", "--revision", first, cwd=tmp_path, MODQ_DATABASE_URL=empty_db)
    assert done.returncode == 0 and done.stdout.strip() == f"database at {first}", done
    done = modq("migrate", cwd=tmp_path, MODQ_DATABASE_URL=empty_db)
    assert done.stdout.strip() == f"database at {head_revision()} (head)", done
    # Asking for an older revision at head: nothing moves, and it says so.
    done = modq("migrate", "--revision", first, cwd=tmp_path, MODQ_DATABASE_URL=empty_db)
    assert done.returncode == 0, done
    assert done.stdout.startswith(f"database at {head_revision()} (head); {first} is older")
    engine = sa.create_engine(empty_db)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == (
            head_revision()
        )
    engine.dispose()
    one_clean_line(
        modq("migrate", "--revision", "0099_nope", cwd=tmp_path, MODQ_DATABASE_URL=empty_db),
        2,
        "cannot resolve revision '0099_nope' (Can't locate revision",
    )


def test_modq_train_without_the_train_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import training.launch as launch\n"
        "launch.REQUIRED = (*launch.REQUIRED, 'no_such_module_modq')\n"
        "launch.run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    one_clean_line(done, 1, "pip install 'modq[train]'")
    assert "no_such_module_modq" in done.stderr


def test_a_database_never_migrated_says_to_migrate(tmp_path: Path, empty_db: str) -> None:
    one_clean_line(
        modq("verdicts", cwd=tmp_path, MODQ_DATABASE_URL=empty_db), 1, "run `modq migrate`"
    )


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    """`modq health` runs every 30 s in each container: it must not drag in the database
    layer, ONNX Runtime or numba that other commands need."""
    code = (
        "import sys; from modq.cli.main import main\n"
        "try:\n    main(['health', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    loaded = done.stdout.strip().splitlines()[-1]
    for heavy in ("sqlalchemy", "onnxruntime", "numba", "celery"):
        assert f"'{heavy}'" not in loaded, heavy
