"""int8 copy of the shipped category model: static QDQ quantisation of its convolutions.

    python -m training.classifier_int8 [--model modq/assets/models/modq-listings.onnx]
                                       [--photos 256]
    python -m training.classifier_int8 --thresholds   # prohibited thresholds for int8 serving

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
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from modq.domain.contract import ModelContract
from modq.domain.preprocess import PreprocessSpec
from modq.domain.provenance import int8_copy_of, sha256_of
from modq.settings import DEFAULT_MODEL, get_settings
from training.export import set_metadata
from training.nudity_int8 import calibration_photos
from training.prohibited import BENIGN, run_outputs
from training.prohibited_data import list_labelled_photos
from training.prohibited_fit import L2, choose_thresholds, fit_softmax, softmax_scores
from training.prohibited_graph import (
    DEFAULT_FEATURES,
    DETECTOR,
    FEATURES_OUT,
    feature_model,
    save_with_features_out,
)
from training.transforms import eval_array

# Everything from the trunk's last activation on stays fp32 (see the module docstring).
FP32_OPS = ("ReduceMean", "ReduceMax", "Concat", "Slice", "Gemm", "Softmax", "Reshape", "Flatten")


METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
BATCH = 16
# Batches per calibrator pass: histogram calibrators keep every activation of a pass in
# memory, so ranges are collected over windows of STRIDE batches and merged.
STRIDE = 2


class _Reader(CalibrationDataReader):  # type: ignore[misc]
    """Batches of BATCH prepared photos; `set_range` (in batches) windows them for
    quantize_static's strided collection."""

    def __init__(self, photos: list[Path], spec: PreprocessSpec, input_name: str) -> None:
        self._photos, self._spec, self._input = photos, spec, input_name
        self._bar = tqdm(total=len(photos), desc="int8 calibration", unit="photo")
        self._batches = self._iter(0, len(self))

    def __len__(self) -> int:
        return -(-len(self._photos) // BATCH)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._batches = self._iter(start_index, end_index)

    def _iter(self, start: int, end: int) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
        for b in range(start, min(end, len(self))):
            chunk = self._photos[b * BATCH : (b + 1) * BATCH]
            arrays = [eval_array(p, self._spec) for p in chunk]
            self._bar.update(len(arrays))
            yield {self._input: np.stack(arrays)}

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)


def quantize_trunk(
    model: Path,
    out: Path,
    photos: list[Path],
    method: str = "minmax",
    keep_fp32: tuple[str, ...] = (),
) -> ModelContract:
    """Write the int8 copy of `model` (trunk quantised, heads fp32) to `out`, calibrated on
    `photos` with `method` (METHODS), with the contract's model version suffixed `-int8`;
    return that contract. Nodes whose name contains one of `keep_fp32` stay fp32 too."""
    source = onnx.load(str(model))
    contract = ModelContract.from_metadata(
        {p.key: p.value for p in source.metadata_props}, str(model)
    )
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))
        graph = onnx.load(str(prepared)).graph
        reader = _Reader(photos, contract.preprocess, contract.input_name)
        stride = STRIDE if len(reader) % STRIDE == 0 else 1
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=[
                n.name
                for n in graph.node
                if n.op_type in FP32_OPS or any(k in n.name for k in keep_fp32)
            ],
            calibrate_method=METHODS[method],
            extra_options={"CalibStridedMinMax": stride},
        )
    quantized = onnx.load(str(out))
    int8 = contract.model_copy(update={"model_version": f"{contract.model_version}-int8"})
    set_metadata(quantized, int8.to_metadata())
    onnx.save(quantized, str(out))
    return int8


def quantize_classifier(
    model: Path,
    out: Path,
    photos: list[Path],
    method: str = "minmax",
    keep_fp32: tuple[str, ...] = (),
) -> dict[str, object]:
    """Write the int8 copy of `model` to `out` and its provenance to `<out>.json`."""
    int8 = quantize_trunk(model, out, photos, method, keep_fp32)
    contract_version = int8.model_version.removesuffix("-int8")
    # Dataset-relative paths (<dataset>/train/<label>/<file>): the same digest on any machine.
    names = ["/".join(p.parts[-4:]) for p in photos]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    provenance: dict[str, object] = {
        "what": f"{model.name} ({contract_version}), static int8 QDQ of the trunk",
        "source_sha256": sha256_of(model),
        "sha256": sha256_of(out),
        "calibration": {
            "datasets": ["listings-v1/train", "prohibited-v2/train"],
            "photos": len(photos),
            "photo_paths_sha256": digest,
            "method": method,
        },
        "settings": "QDQ, per-channel, activations QUInt8, weights QInt8, "
        f"fp32: {', '.join(FP32_OPS)}" + "".join(f", nodes named *{k}*" for k in keep_fp32),
        "onnxruntime": ort.__version__,
        "command": "python -m training.classifier_int8 "
        f"--model {_shown(model)} --photos {len(photos)} --method {method}"
        + "".join(f" --keep-fp32 {k}" for k in keep_fp32),
    }
    Path(f"{out}.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def int8_thresholds(
    fp32: Path, int8: Path, data: Path, benign: Path, cache: Path, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """Prohibited thresholds for serving `int8`, chosen as `add-prohibited-head` chose them
    for `fp32` (training/prohibited.py): the same 5 folds and fold heads, fitted on fp32
    features as the shipped head was, but each scoring its held-out photos through the int8
    trunk, which is what a new photo meets in an int8 worker. The fp32 side is recomputed
    beside it as a check: it reproduces the thresholds `add-prohibited-head` printed."""
    contract = ModelContract.from_metadata(
        {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}, str(fp32)
    )
    labels = contract.detectors[DETECTOR].labels
    pro = list_labelled_photos(data, "train")
    listing = list_labelled_photos(benign, "train", benign_as=BENIGN)
    models = {
        "fp32": feature_model(fp32, DEFAULT_FEATURES, cache / "features-fp32.onnx"),
        "int8": _features_output(int8, cache / "features-int8.onnx"),
    }
    x = {
        name: np.concatenate(
            [run_outputs(m, p.paths, [FEATURES_OUT], cache)[FEATURES_OUT] for p in (pro, listing)]
        )
        for name, m in models.items()
    }
    classes = [*labels, BENIGN]
    y = np.array([classes.index(n) for n in pro.labels + listing.labels], np.int64)
    folds = np.random.default_rng(seed).integers(0, 5, len(y))  # as train_head draws them
    scores = {name: np.zeros((len(y), len(labels)), np.float32) for name in x}
    for f in tqdm(range(5), desc="out-of-fold scores (5-fold)"):
        w, b = fit_softmax(x["fp32"][folds != f], y[folds != f], len(classes), l2=L2)
        for name in x:
            scores[name][folds == f] = softmax_scores(x[name][folds == f], w, b, len(labels))
    is_listing = np.arange(len(y)) >= len(pro.paths)
    is_photo = np.ones(len(y), bool)
    return {
        name: choose_thresholds(s, y, is_listing, is_photo, labels) for name, s in scores.items()
    }


def _features_output(int8: Path, out: Path) -> Path:
    """A copy of the int8 model whose extra output is its prohibited head's input."""
    proto = onnx.load(str(int8))
    concat = next(n for n in proto.graph.node if n.name == f"{DETECTOR}_concat")
    return save_with_features_out(proto, concat.output[0], out)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=int, default=256, help="calibration photos in all")
    parser.add_argument("--method", choices=sorted(METHODS), default="minmax")
    parser.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        help="leave nodes whose name contains this fp32 as well (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: beside --model")
    parser.add_argument(
        "--thresholds",
        action="store_true",
        help="instead: print the prohibited thresholds for serving the existing int8 copy",
    )
    parser.add_argument("--cache", type=Path, default=Path("runs/prohibited-cache"))
    args = parser.parse_args()
    datasets = get_settings().datasets_dir
    if args.thresholds:
        found = int8_thresholds(
            args.model,
            int8_copy_of(args.model),
            datasets / "prohibited-v2",
            datasets / "listings-v1",
            args.cache,
        )
        print(json.dumps(found, indent=2))
        return
    prohibited = args.photos // 4
    photos = calibration_photos(datasets / "listings-v1" / "train", args.photos - prohibited)
    photos += calibration_photos(datasets / "prohibited-v2" / "train", prohibited)
    out = args.out or int8_copy_of(args.model)
    made = quantize_classifier(args.model, out, photos, args.method, tuple(args.keep_fp32))
    print(json.dumps(made, indent=2))


if __name__ == "__main__":
    main()
