"""Files the runtime needs that ship inside the package: the category and open_nsfw models
with their provenance files, and the default policy.

They are found through `importlib.resources`, so an installed wheel, the image and a source
checkout all resolve them the same way, whatever the working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """The file system path of a shipped asset (`asset_path("models", "x.onnx")`).

    modq is installed as plain files (never zipped): ONNX Runtime and Alembic need real
    paths, which `Traversable` objects of a file system package are.
    """
    return Path(str(files(__name__).joinpath(*parts)))
