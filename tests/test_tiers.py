"""The tier rules of tests/tiers.py and the unit-tier guard, on small cases whose answer is
known: a rule that stopped working would quietly put slow tests in `make test-fast`."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.tiers import TESTS_DIR, Guard, TierViolation, heavy_import, names_used


def _spawns() -> None:  # never called: only read
    subprocess.run(["true"], check=False)


def _calls_a_helper() -> None:
    _spawns()


def _harmless() -> int:
    return len(os.sep)


def test_names_are_followed_into_helpers_defined_in_tests() -> None:
    # Looked up by string: naming the helper here would make this very test integration.
    helper = globals()["_calls_a_helper"]
    assert "subprocess" in names_used([helper])
    assert "subprocess" not in names_used([_harmless])


def test_modules_that_import_torch_are_found_without_importing_them(tmp_path: Path) -> None:
    assert heavy_import(TESTS_DIR / "test_training_export.py")
    assert heavy_import(TESTS_DIR / "test_training_preprocess.py")  # through training/
    assert heavy_import(TESTS_DIR / "test_reasons.py") is None
    lazy = tmp_path / "test_lazy.py"
    lazy.write_text("def test_x():\n    import torch\n")
    assert heavy_import(lazy) is None  # inside a function: paid only when it runs
    eager = tmp_path / "test_eager.py"
    eager.write_text("try:\n    import sklearn.metrics\nexcept ImportError:\n    pass\n")
    assert heavy_import(eager) == "sklearn.metrics"


def test_the_guard_refuses_services_processes_and_the_datasets(tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    (datasets / "listings-v1").mkdir(parents=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    guard = Guard({port}, datasets, driver=False)
    guard.arm("tests/test_tiers.py::case")
    try:
        with pytest.raises(TierViolation, match=f"127.0.0.1:{port}"):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with pytest.raises(TierViolation, match="reading the datasets"):
            os.listdir(datasets / "listings-v1")
        with pytest.raises(TierViolation, match="reading the datasets"):
            (datasets / "listings-v1" / "x.jpg").open("rb")
        (tmp_path / "elsewhere.txt").write_text("fine")  # tmp_path is not the datasets
    finally:
        found = guard.disarm()
        listener.close()
    assert len(found) == 3 and all("a unit test may not do this" in f for f in found)
    os.listdir(datasets)  # disarmed: allowed again
