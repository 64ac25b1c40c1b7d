"""modq-train: labelled photos → the ONNX model the worker ships with.

Subpackage layout: `data` (scan and check a dataset: `prepare`), `transforms` (evaluation =
the worker's own preprocessing, plus training augmentations), `backbones` (pretrained
networks split into a frozen trunk and a fine-tuned tail), `train` (two-phase training on
cached trunk features), `evaluate` (metrics, confusion matrix, mismatch operating curve),
`export` (ONNX with the model contract, parity check, int8) and `cli` (the `modq-train`
command). Torch lives only here: `worker/` never imports it.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A refusal with a message meant for the person running modq-train."""
