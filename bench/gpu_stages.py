"""One bench_gpu.py worker process: the pipeline's stages with a chosen provider and decoder.

fetch (read bytes) → decode (CPU threads: `decode_image`, or GPU: nvImageCodec, batched) →
model inputs (`preprocess` and open_nsfw's `prepare_photo`, on threads) → category model and
nudity model through IO binding (input copied to the device once, outputs bound there) →
policy. Every stage's wall time is summed; the process returns its totals.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from modq.detectors.nudity import bundled_model_path, prepare_photo
from modq.domain.contract import ModelContract
from modq.domain.events import ListingEvent
from modq.domain.preprocess import preprocess
from modq.domain.provenance import classifier_path, nudity_int8_path
from modq.domain.verdicts import PhotoResult
from modq.pipeline.decode import decode_image
from modq.policy.policy import Policy
from modq.settings import Settings


@dataclass(frozen=True)
class Config:
    provider: str  # "tensorrt", "cuda" or "cpu"
    batch: int  # photos per model call
    decoder: str  # "cpu" or "nvimgcodec"
    processes: int
    threads: int = 4  # CPU decode / preprocessing threads per process

    @property
    def device(self) -> str:
        return "cpu" if self.provider == "cpu" else "cuda"


def providers(cfg: Config, input_name: str, shape: tuple[int, ...], cache: Path) -> list[Any]:
    """TensorRT (fp16, engine cache, one profile from 1 to `batch`), then CUDA, then CPU."""
    dims = "x".join(str(d) for d in shape[1:])
    trt = {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_profile_min_shapes": f"{input_name}:1x{dims}",
        "trt_profile_opt_shapes": f"{input_name}:{cfg.batch}x{dims}",
        "trt_profile_max_shapes": f"{input_name}:{cfg.batch}x{dims}",
    }
    chains: dict[str, list[Any]] = {
        "tensorrt": [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider"],
        "cuda": ["CUDAExecutionProvider"],
        "cpu": [],
    }
    chain = chains[cfg.provider]
    return [*chain, "CPUExecutionProvider"]


class BoundModel:
    """An ONNX session run through IO binding on the configured device."""

    def __init__(self, path: str, cfg: Config, shape: tuple[int, ...], cache: Path) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        probe = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = probe.get_inputs()[0].name
        self.outputs = [o.name for o in probe.get_outputs()]
        chain = providers(cfg, self.input, shape, cache)
        self.session = ort.InferenceSession(path, sess_options=opts, providers=chain)
        self.device = cfg.device
        self.metadata = probe.get_modelmeta().custom_metadata_map

    def __call__(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[Any]]:
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch), self.device, 0)
        binding.bind_ortvalue_input(self.input, value)
        for name in self.outputs:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return [np.asarray(x) for x in binding.copy_outputs_to_cpu()]


def gpu_decoder() -> Any:
    """nvImageCodec's batched decoder, or None where the package (or a GPU) is missing."""
    try:
        from nvidia import nvimgcodec  # type: ignore[import-not-found,unused-ignore]

        return nvimgcodec.Decoder()
    except Exception:
        return None


def run_process(
    cfg: Config,
    events: list[ListingEvent],
    settings: Settings,
    cache: Path,
    ready: Callable[[], object] = lambda: None,
) -> dict[str, float]:
    """Moderate `events` (scores + policy, nothing stored) and return summed stage times.

    Sessions are built and warmed up (TensorRT engines built or loaded) before `ready()`;
    the clock starts after it returns."""
    ms: dict[str, float] = defaultdict(float)
    pool = ThreadPoolExecutor(cfg.threads)
    # The int8 copies serve CPUs; a GPU runs the fp32 files (fp16 under TensorRT).
    clf_path = classifier_path(settings) if cfg.provider == "cpu" else settings.model_path
    clf = BoundModel(str(clf_path), cfg, (cfg.batch, 3, 224, 224), cache)
    contract = ModelContract.from_metadata(clf.metadata, str(clf_path))
    spec = contract.preprocess
    nsfw_path = nudity_int8_path() if cfg.provider == "cpu" else bundled_model_path()
    nsfw = BoundModel(nsfw_path, cfg, (cfg.batch, 224, 224, 3), cache)
    policy = Policy.load(settings.policy_path)
    decoder = gpu_decoder() if cfg.decoder == "nvimgcodec" else None
    roots = [Path(r) for r in settings.image_roots]
    out = clf.outputs.index(contract.output_name)
    clf(np.zeros((cfg.batch, 3, spec.input_size, spec.input_size), np.float32))
    nsfw(np.zeros((cfg.batch, 224, 224, 3), np.float32))
    ready()
    refs = [(n, i, ref) for n, e in enumerate(events) for i, ref in enumerate(e.images)]
    started = time.perf_counter()
    probs_all: dict[tuple[int, int], Any] = {}
    nsfw_all: dict[tuple[int, int], float] = {}
    for start in range(0, len(refs), cfg.batch):
        part = refs[start : start + cfg.batch]
        t = time.perf_counter()
        data = list(pool.map(lambda r: _read(r[2], roots), part))
        t, ms["fetch"] = _lap(t, ms["fetch"])
        if decoder is not None:
            decoded = [Image.fromarray(np.asarray(img.cpu())) for img in decoder.decode(data)]
        else:
            decoded = list(pool.map(lambda d: decode_image(d, spec, 50_000_000), data))
        t, ms[f"decode ({cfg.decoder})"] = _lap(t, ms[f"decode ({cfg.decoder})"])
        x = np.stack(list(pool.map(lambda im: preprocess(im, spec), decoded)))
        y = np.stack(list(pool.map(prepare_photo, decoded)))
        t, ms["model inputs"] = _lap(t, ms["model inputs"])
        probs = clf(x)[out]
        if not contract.output_is_probability:
            probs = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        t, ms["model: category"] = _lap(t, ms["model: category"])
        nsfw_scores = nsfw(y)[0][:, 1]
        t, ms["model: nudity"] = _lap(t, ms["model: nudity"])
        for (n, i, _), p, s in zip(part, probs, nsfw_scores, strict=True):
            probs_all[n, i], nsfw_all[n, i] = p, float(s)
    t = time.perf_counter()
    for n, event in enumerate(events):
        photos = [
            PhotoResult(index=i, ref=ref, top=[], detectors={"nudity.nsfw": nsfw_all[n, i]})
            for i, ref in enumerate(event.images)
        ]
        rows = np.stack([probs_all[n, i] for i in range(len(event.images))])
        policy.decide_category(event, photos, rows, contract.labels)
        policy.detector_rules.decide(event.declared_category, photos)
    ms["policy"] += (time.perf_counter() - t) * 1e3
    ms["total"] = (time.perf_counter() - started) * 1e3
    pool.shutdown()
    return dict(ms)


def _read(ref: str, roots: list[Path]) -> bytes:
    path = Path(ref)
    if not path.is_absolute():
        path = next((r / ref for r in roots if (r / ref).exists()), path)
    return path.read_bytes()


def _lap(started: float, total: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now, total + (now - started) * 1e3
