"""`quantize`: optional int8 (static, QDQ, per-channel) copy of the fp32 ONNX model.

Calibrated on training photos; accuracy and speed are measured on the validation photos
next to fp32 so the trade-off is visible. The shipped model stays fp32.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from tqdm import tqdm

from modq.domain.contract import ModelContract
from modq.domain.preprocess import PreprocessSpec
from modq.domain.taxonomy import macros
from training.export import onnx_probs, session, set_metadata
from training.transforms import eval_array


class _Photos(CalibrationDataReader):
    def __init__(self, photos: list[Path], spec: PreprocessSpec, input_name: str) -> None:
        self._iter = iter(photos)
        self._bar = tqdm(total=len(photos), desc="int8 calibration", unit="photo")
        self.spec, self.input_name = spec, input_name

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        path = next(self._iter, None)
        if path is None:
            self._bar.close()
            return None
        self._bar.update()
        return {self.input_name: eval_array(path, self.spec)[None]}


def quantize(fp32: Path, int8: Path, calibration: list[Path]) -> Path:
    model = onnx.load(str(fp32))
    contract = ModelContract.from_metadata({p.key: p.value for p in model.metadata_props})
    quantize_static(
        str(fp32),
        str(int8),
        _Photos(calibration, contract.preprocess, contract.input_name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    quantized = onnx.load(str(int8))
    meta = contract.model_copy(update={"model_version": f"{contract.model_version}-int8"})
    set_metadata(quantized, meta.to_metadata())
    onnx.save(quantized, str(int8))
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
