"""int8 copy of the shipped category model: static QDQ quantisation of its convolutions.

    python -m training.classifier_int8 [--model models/modq-listings.onnx] [--photos 256]

Writes `<model stem>-int8.onnx` beside the fp32 file, with the same `modq.contract` metadata
(model version suffixed `-int8`) and a provenance file (`<out>.json`: the fp32 file's and the
copy's sha256, the calibration photo list digest, settings, onnxruntime version). The worker
runs it with `MODQ_CLASSIFIER_PRECISION=int8` and refuses a copy whose fp32 source changed.

Only the convolutional trunk is quantised. The pooling, both heads and their softmax stay
fp32: quantising them rounds the category probabilities to steps of 1/256, and the policy's
mismatch rule compares the declared category's probability with a threshold of 0.0007.
Calibration photos are listings-v1 *train* (spread evenly over the categories) plus
prohibited-v2 *train* (the prohibited head reads the same feature map), prepared exactly as
the worker prepares them. docs/model-card.md reports accuracy and drift against fp32.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from modq.domain.contract import ModelContract
from modq.domain.preprocess import PreprocessSpec
from modq.domain.provenance import int8_copy_of, sha256_of
from modq.settings import DEFAULT_MODEL, get_settings
from training.export import set_metadata
from training.nudity_int8 import calibration_photos
from training.transforms import eval_array

# Everything from the trunk's last activation on stays fp32 (see the module docstring).
FP32_OPS = ("ReduceMean", "ReduceMax", "Concat", "Slice", "Gemm", "Softmax", "Reshape", "Flatten")


class _Reader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, photos: list[Path], spec: PreprocessSpec, input_name: str) -> None:
        self._batches = self._iter(photos, spec, input_name)

    @staticmethod
    def _iter(
        photos: list[Path], spec: PreprocessSpec, input_name: str, batch: int = 16
    ) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
        for start in range(0, len(photos), batch):
            arrays = [eval_array(p, spec) for p in photos[start : start + batch]]
            yield {input_name: np.stack(arrays)}

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)


def quantize_classifier(model: Path, out: Path, photos: list[Path]) -> dict[str, object]:
    """Write the int8 copy of `model` to `out` and its provenance to `<out>.json`."""
    source = onnx.load(str(model))
    meta = {p.key: p.value for p in source.metadata_props}
    contract = ModelContract.from_metadata(meta, str(model))
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))
        graph = onnx.load(str(prepared)).graph
        quantize_static(
            str(prepared),
            str(out),
            _Reader(photos, contract.preprocess, contract.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=[n.name for n in graph.node if n.op_type in FP32_OPS],
        )
    quantized = onnx.load(str(out))
    int8 = contract.model_copy(update={"model_version": f"{contract.model_version}-int8"})
    set_metadata(quantized, int8.to_metadata())
    onnx.save(quantized, str(out))
    # Dataset-relative paths (<dataset>/train/<label>/<file>): the same digest on any machine.
    names = ["/".join(p.parts[-4:]) for p in photos]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    provenance: dict[str, object] = {
        "what": f"{model.name} ({contract.model_version}), static int8 QDQ of the trunk",
        "source_sha256": sha256_of(model),
        "sha256": sha256_of(out),
        "calibration": {
            "datasets": ["listings-v1/train", "prohibited-v2/train"],
            "photos": len(photos),
            "photo_paths_sha256": digest,
            "method": "MinMax",
        },
        "settings": "QDQ, per-channel, activations QUInt8, weights QInt8, "
        f"fp32: {', '.join(FP32_OPS)}",
        "onnxruntime": ort.__version__,
        "command": "python -m training.classifier_int8 "
        f"--model {_shown(model)} --photos {len(photos)}",
    }
    Path(f"{out}.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=int, default=256, help="calibration photos in all")
    args = parser.parse_args()
    datasets = get_settings().datasets_dir
    prohibited = args.photos // 4
    photos = calibration_photos(datasets / "listings-v1" / "train", args.photos - prohibited)
    photos += calibration_photos(datasets / "prohibited-v2" / "train", prohibited)
    out = int8_copy_of(args.model)
    print(json.dumps(quantize_classifier(args.model, out, photos), indent=2))


if __name__ == "__main__":
    main()
