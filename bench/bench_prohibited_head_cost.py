"""What the prohibited head adds per photo: its nodes alone, timed on the feature map.

    .venv/bin/python bench/bench_prohibited_head_cost.py [MODEL ...]

The whole model's time (bench/bench_pipeline.py --compare) is ~5-8 ms a photo on this shared
machine and varies by more than the head costs, so this times only the part of each graph
between the last feature map (the input of the ReduceMean that pools `embedding`) and
`prohibited_probs`, against the same map → `embedding` (which the category head needs
anyway); the difference is the head's cost. Batch 32, best of interleaved rounds, 2 threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort

from modq.settings import DEFAULT_MODEL


def timed_subgraph(model: Path, output: str, tmp: Path) -> tuple[ort.InferenceSession, str]:
    proto = onnx.load(str(model))
    pool = next(n for n in proto.graph.node if "embedding" in n.output)
    out = tmp / f"{model.stem}-{output}.onnx"
    onnx.utils.extract_model(str(model), str(out), [pool.input[0]], [output])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"]), pool.input[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="*", default=[DEFAULT_MODEL])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            (f"{m.name} {out}", *timed_subgraph(m, out, Path(tmp)))
            for m in args.models
            for out in ("embedding", "prohibited_probs")
        ]
        x = np.random.default_rng(0).random((args.batch, 1280, 7, 7)).astype(np.float32) * 6
        best = {name: float("inf") for name, _, _ in runs}
        for _ in range(args.rounds):
            for name, session, inp in runs:
                out = session.get_outputs()[0].name
                session.run([out], {inp: x})
                started = time.perf_counter()
                for _ in range(args.repeats):
                    session.run([out], {inp: x})
                spent = (time.perf_counter() - started) / args.repeats / args.batch
                best[name] = min(best[name], spent)
    for model in args.models:
        pooled, head = best[f"{model.name} embedding"], best[f"{model.name} prohibited_probs"]
        print(f"{model.name:28s} map→embedding {pooled * 1e6:6.2f} µs/photo, "
              f"map→prohibited_probs {head * 1e6:6.2f} µs/photo: head adds "
              f"{(head - pooled) * 1e6:6.2f} µs/photo")  # fmt: skip


if __name__ == "__main__":
    main()
