"""Out-of-fold scores of the prohibited head on its own training photos, for the ship gate.

`add-prohibited-head` fits its head five times on four fifths of the training photos and
scores the fifth (that is how it chooses thresholds). Those scores are what a model trained on
train says about train photos it has not seen, so the gate (`modq-train compare --split
val+oof`) may count the train photos as well as val: about ten times the benign listing
photos and five times the prohibited photos of val alone.

They are stored in `<dir>/<weights digest>.npz`: the digest covers every initializer of the
graph (trunk and head), so a file with the same weights finds its scores whatever its path,
and a refit or a retrained trunk never reads stale ones. Photos are named dataset-relative
(`prohibited-v2/train/knife/x.jpg`), as the gate lists them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

OOF_DIR = Path("runs/prohibited-oof")

F32 = npt.NDArray[np.float32]


def weights_digest(model: Path) -> str:
    """SHA-256 over the graph's initializers (name, dtype, shape, bytes), sorted by name."""
    proto = onnx.load(str(model))
    digest = hashlib.sha256()
    for init in sorted(proto.graph.initializer, key=lambda t: t.name):
        digest.update(f"{init.name}|{init.data_type}|{list(init.dims)}|".encode())
        digest.update(init.raw_data or init.SerializeToString())
    return digest.hexdigest()


def photo_name(path: Path) -> str:
    """`<dataset>/<split>/<label>/<file>`: the same on any machine."""
    return "/".join(path.parts[-4:])


def save_oof(model: Path, paths: list[Path], keys: list[str], scores: F32, folder: Path) -> Path:
    """Write the out-of-fold `scores` (one row per photo of `paths`, columns `keys`)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{weights_digest(model)[:20]}.npz"
    np.savez_compressed(
        out,
        names=np.array([photo_name(p) for p in paths]),
        keys=np.array(keys),
        scores=scores.astype(np.float32),
    )
    return out


def load_oof(model: Path, folder: Path) -> tuple[dict[str, int], list[str], F32] | None:
    """(row of each photo name, column keys, scores) for `model`'s weights, or None."""
    path = folder / f"{weights_digest(model)[:20]}.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        names = [str(n) for n in z["names"]]
        return {n: i for i, n in enumerate(names)}, [str(k) for k in z["keys"]], z["scores"]
