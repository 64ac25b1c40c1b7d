"""Fixtures of the fault-injection suite: one PostgreSQL cluster of its own for the module,
and photos on local disk."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.faults.harness import CATEGORIES, Run
from tests.faults.services import PostgresCluster
from tests.photokit import COLOURS


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    pg = PostgresCluster()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1024×768 JPEGs per category (decoding them is most of a batch's work)."""
    root = tmp_path_factory.mktemp("fault-photos")
    for category in CATEGORIES:
        for n in range(2):
            buf = io.BytesIO()
            image = Image.new("RGB", (1024, 768), COLOURS[category])
            image.putpixel((n, n), (0, 0, 0))
            image.save(buf, "JPEG", quality=90)
            (root / f"{category}-{n}.jpg").write_bytes(buf.getvalue())
    return root


def photos_of(photo_root: Path, i: int) -> list[str]:
    category = CATEGORIES[i % len(CATEGORIES)]
    return [str(photo_root / f"{category}-{n}.jpg") for n in range(2)]


@pytest.fixture
def make_run(
    cluster: PostgresCluster, tiny_model: Path, photo_root: Path, tmp_path: Path
) -> Iterator[type[Run]]:
    """`make_run(name, **settings)`: a scenario's world, closed (workers, Redis) at the end."""
    runs: list[Run] = []

    def _make(name: str, **overrides: object) -> Run:
        run = Run(name, cluster, tmp_path, tiny_model, photo_root, **overrides)
        runs.append(run)
        return run

    yield _make  # type: ignore[misc]
    for run in runs:
        run.close()
