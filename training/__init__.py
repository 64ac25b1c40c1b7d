"""modq-train: labelled photos → the ONNX model the worker ships with.

Subpackage layout: `data` (scan and check a dataset: `prepare`), `transforms` (evaluation =
the worker's own preprocessing, plus training augmentations), `backbones` (pretrained
networks split into a frozen trunk and a fine-tuned tail), `train` (two-phase training on
cached trunk features), `evaluate` (metrics, confusion matrix, mismatch operating curve),
`export` (ONNX with the model contract, parity check, int8) and `cli` (the `modq-train`
command). Torch lives only here: `modq/` never imports it.
"""

from __future__ import annotations

# modq-train's refusals are part of modq's one exception tree (modq/errors.py).
from modq.errors import TrainingError

__all__ = ["TrainingError"]
