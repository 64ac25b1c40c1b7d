"""`quantize`: optional int8 (static, QDQ, per-channel) copy of the fp32 ONNX model, made
the way the shipped int8 copy is (`training.classifier_int8`).

Calibrated on training photos; accuracy and speed are measured on the validation photos
next to fp32 so the trade-off is visible. The run's `model.onnx` stays fp32; the int8 copy
CPU workers serve is made from the shipped file by `python -m training.classifier_int8`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modq.domain.contract import ModelContract
from modq.domain.taxonomy import macros
from training.classifier_int8 import quantize_trunk
from training.export import onnx_probs, session
from training.transforms import eval_array


def quantize(fp32: Path, int8: Path, calibration: list[Path]) -> Path:
    # The shipped model's recipe (training/classifier_int8.py): heads and softmax stay fp32.
    quantize_trunk(fp32, int8, calibration)
    return int8


def throughput(path: Path, photos: list[Path], batch_size: int = 16, repeats: int = 3) -> float:
    """Images per second of ONNX Runtime on 2 threads (preprocessing excluded)."""
    sess = session(path, threads=2)
    contract = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map)
    batch = np.stack([eval_array(p, contract.preprocess) for p in photos[:batch_size]])
    sess.run(None, {contract.input_name: batch})  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        sess.run(None, {contract.input_name: batch})
    return repeats * len(batch) / (time.perf_counter() - start)


def compare(
    fp32: Path, int8: Path, photos: list[Path], y: npt.NDArray[np.int64], labels: list[str]
) -> dict[str, Any]:
    macro = np.array(macros(labels))
    report: dict[str, Any] = {}
    probs = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        p = onnx_probs(path, photos)
        probs[name] = p
        pred = p.argmax(1)
        report[name] = {
            "top1": float((pred == y).mean()),
            "macro_category_accuracy": float((macro[pred] == macro[y]).mean()),
            "images_per_second_2_threads": round(throughput(path, photos), 1),
            "file_mb": round(path.stat().st_size / 2**20, 2),
        }
    report["max_abs_prob_difference"] = float(np.abs(probs["fp32"] - probs["int8"]).max())
    report["top1_agreement"] = float((probs["fp32"].argmax(1) == probs["int8"].argmax(1)).mean())
    return report
