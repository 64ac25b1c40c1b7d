"""modq as operators run it: built into a wheel, installed into a fresh virtual environment by
the image's own install script (deploy/install-runtime.sh), and run from a folder that is not
the checkout, with HOME elsewhere too. No file of this repository is reachable from there:
models, policy and migrations must come out of the installed package.

Slow-ish (a fresh venv; pip's cache keeps repeated runs at about a minute), and the only test
that proves the wheel, the Dockerfile's install steps and the `data_dir` default work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modq.settings import REPO_ROOT
from tests.conftest import create_database, drop_database

# The wheel built and installed into a fresh virtualenv, then run: the whole product.
pytestmark = pytest.mark.system

# System libraries a GUI build of OpenCV needs; python:3.11-slim has none of them.
GUI_LIBRARIES = ("libGL", "libEGL", "libX11", "libxcb", "libgthread", "libglib", "libQt")


@dataclass
class Installed:
    venv: Path
    home: Path
    elsewhere: Path
    wheel: Path
    install_s: float

    def run(
        self, *args: str, env: dict[str, str] | None = None, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        environ = {
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        return subprocess.run(
            args, cwd=self.elsewhere, env=environ, capture_output=True, text=True, timeout=300,
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def python(self, code: str) -> str:
        done = self.run(str(self.venv / "bin" / "python"), "-c", code)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    dist, venv, home, elsewhere = (root / n for n in ("dist", "venv", "home", "elsewhere"))
    home.mkdir()
    elsewhere.mkdir()
    # Built from a copy of what the image's build context holds, so a developer's stale
    # build/ folder (setuptools reuses it) can never put old files into the wheel.
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in ("modq", "training"):
        shutil.copytree(REPO_ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("modq-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    start = time.monotonic()
    done = subprocess.run(
        ["sh", str(REPO_ROOT / "deploy" / "install-runtime.sh"), str(wheel)],
        # No PYTHONPATH: the fresh venv must see its own install, not a checkout.
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
             "PYTHON": str(venv / "bin" / "python")},
        cwd=elsewhere, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield Installed(venv, home, elsewhere, wheel, time.monotonic() - start)


def test_the_wheel_carries_what_the_runtime_needs(installed: Installed) -> None:
    import zipfile

    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for needed in (
        "modq/assets/models/modq-listings.onnx",
        "modq/assets/models/modq-listings-int8.onnx",
        "modq/assets/models/modq-listings-int8.onnx.json",
        "modq/assets/models/open-nsfw-int8.onnx",
        "modq/assets/models/open-nsfw-int8.onnx.json",
        "modq/assets/policies/default.toml",
        "modq/store/migrations/env.py",
        "modq/store/migrations/versions/0001_initial_schema.py",
    ):
        assert needed in names, needed
    site = installed.python("import modq, pathlib; print(pathlib.Path(modq.__file__).parent)")
    assert site.startswith(str(installed.venv)), site
    model = installed.python("from modq.settings import Settings; print(Settings().model_path)")
    assert model.startswith(site)


def test_state_lives_outside_the_package(installed: Installed) -> None:
    data_dir = installed.python("from modq.settings import Settings; print(Settings().data_dir)")
    assert data_dir == str(installed.home / ".local" / "state" / "modq")
    secret = installed.python(
        "from modq.console.auth import console_secret; from modq.settings import Settings;"
        "console_secret(Settings()); print('ok')"
    )
    assert secret == "ok"
    assert list((installed.home / ".local" / "state" / "modq").iterdir())


def test_runtime_only_no_torch_no_gui_libraries(installed: Installed) -> None:
    assert installed.python("import importlib.util as u; print(u.find_spec('torch'))") == "None"
    train = installed.run("modq-train", "--help")
    assert train.returncode == 1 and "pip install 'modq[train]'" in train.stderr, train
    cv2_dir = Path(installed.python("import cv2, os; print(os.path.dirname(cv2.__file__))"))
    for lib in cv2_dir.glob("*.so"):
        linked = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
        needed = [line.split()[0] for line in linked.splitlines() if "=>" in line]
        gui = [n for n in needed if n.startswith(GUI_LIBRARIES)]
        assert not gui, (lib, gui)
    size_mb = (
        sum(f.stat().st_size for f in (installed.venv / "lib").rglob("*") if f.is_file()) / 1e6
    )
    print(f"\nruntime install: {size_mb:.0f} MB in the venv, {installed.install_s:.0f} s")


@pytest.fixture
def database() -> Iterator[str]:
    url = create_database("modq_wheel")
    yield url
    drop_database(url)


def test_migrate_classify_and_a_worker_from_anywhere(
    installed: Installed, database: str, redis_url: str, datasets_dir: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    env = {
        "MODQ_DATABASE_URL": database,
        "MODQ_BROKER_URL": redis_url,
        "MODQ_IMAGE_ROOTS": str(datasets_dir),
        "MODQ_QUEUE_NEW": f"wheel-{run}.new",
        "MODQ_QUEUE_BACKFILL": f"wheel-{run}.backfill",
    }
    migrated = installed.run("modq", "migrate", env=env)
    assert migrated.returncode == 0 and "(head)" in migrated.stdout, migrated

    val = datasets_dir / "listings-v1" / "val"
    phone = sorted((val / "electronics.phone").glob("*.jpg"))[:3]
    classified = installed.run("modq", "classify", "--no-progress", str(phone[0]), env=env)
    assert classified.returncode == 0, classified.stderr
    line = json.loads(classified.stdout.splitlines()[0])
    assert line["top"][0][0] == "electronics.phone", line

    events = "".join(
        json.dumps({"listing_id": f"w-{run}-{i}", "declared_category": "electronics.phone",
                    "images": [str(p)]}) + "\n"
        for i, p in enumerate(phone)
    )  # fmt: skip
    submitted = installed.run("modq", "submit", "-", env=env, input=events)
    assert submitted.returncode == 0 and "queued 3" in submitted.stdout, submitted
    log = (installed.elsewhere / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(installed.venv / "bin" / "modq"), "worker", "-p", "1"],
        cwd=installed.elsewhere,
        env={"PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin", "HOME": str(installed.home),
             **env},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(rows) < 3:
            assert worker.poll() is None, (installed.elsewhere / "worker.log").read_text()[-3000:]
            listed = installed.run("modq", "verdicts", "--json", env=env)
            rows = [json.loads(x) for x in listed.stdout.splitlines() if x.strip()]
            time.sleep(0.5)
        assert len(rows) == 3, (installed.elsewhere / "worker.log").read_text()[-3000:]
        assert {r["listing_id"] for r in rows} == {f"w-{run}-{i}" for i in range(3)}
        assert all(r["model_version"] for r in rows)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    # Nothing was written into the installed package or the working folder but the log.
    assert sorted(p.name for p in installed.elsewhere.iterdir()) == ["worker.log"]
