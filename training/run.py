"""The steps behind each `modq-train` subcommand; all read and write one run folder.

<out>/manifest.json      prepare: checked photo listing, data hash, problems
<out>/cache/             trunk features (reused when a run is repeated)
<out>/checkpoints/       best.pt and last.pt
<out>/train.json         history, timings, held-out photo list
<out>/evaluation.json    val metrics, mismatch curve, chosen thresholds
<out>/confusion.{png,json}, mismatch_curve.png
<out>/model.onnx         export; export.json has the parity check and shipping decision
<out>/model-int8.onnx    quantize; quantize.json compares it with fp32
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomlkit

from modq.domain.contract import ModelContract
from training import TrainingError
from training.data import Item, Manifest, prepare, report
from training.evaluate import (
    at_threshold,
    choose_threshold,
    classification_metrics,
    default_thresholds,
    labels_of,
    mismatch_curve,
    predict,
    save_confusion,
    save_curve_plot,
)
from training.export import model_version, parity, ship, to_onnx
from training.train import TrainConfig, Trainer, items_for, load_checkpoint

MAX_SHIPPED_MB = 20.0
REPORT_SHARES = (0.05, 0.1, 0.2, 0.5)


def _read_json(path: Path, step: str) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"{path} not found: run `modq-train {step}` first")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _command() -> str:
    return " ".join(["modq-train", *sys.argv[1:]])


def run_prepare(
    data: Path,
    out: Path,
    *,
    near_distance: int,
    exclude_leaked: bool,
    workers: int,
    extra: Sequence[Path] = (),
) -> Manifest:
    started = time.perf_counter()
    manifest = prepare(
        data,
        out,
        near_distance=near_distance,
        exclude_leaked=exclude_leaked,
        workers=workers,
        extra=extra,
    )
    print(report(manifest))
    _merge_json(out / "timings.json", {"prepare": round(time.perf_counter() - started, 1)})
    return manifest


def run_train(out: Path, cfg: TrainConfig) -> dict[str, Any]:
    summary = Trainer(cfg, Manifest.load(out), out).run()
    _merge_json(out / "timings.json", {"train": summary["seconds"]})
    return summary


def _spread(items: list[Item], n: int) -> list[Item]:
    """Up to n items taking turns across labels, so a parity check sees every category."""
    by_label: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    picked: list[Item] = []
    queues = [list(v) for _, v in sorted(by_label.items())]
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def run_evaluate(
    out: Path, *, share: float, target_precision: float, policy: Path | None
) -> dict[str, Any]:
    started = time.perf_counter()
    manifest = Manifest.load(out)
    trained = _read_json(out / "train.json", "train")
    backbone, ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    root = Path(manifest.root)
    held = items_for(manifest, trained["holdout"])
    val = manifest.split("val")
    p_held = predict(backbone.net, root, held, backbone.spec, "evaluate: holdout", out / "cache")
    p_val = predict(backbone.net, root, val, backbone.spec, "evaluate: val", out / "cache")
    y_held, y_val = labels_of(held, manifest), labels_of(val, manifest)
    np.save(out / "val_probs.npy", p_val)

    thresholds = default_thresholds()
    curve_held = mismatch_curve(p_held, y_held, thresholds, share)
    curve_val = mismatch_curve(p_val, y_val, thresholds, share)
    chosen = choose_threshold(curve_held, target_precision)
    t = chosen["threshold"]
    by_share = {
        str(s): at_threshold(mismatch_curve(p_val, y_val, np.array([t]), s), t)
        for s in REPORT_SHARES
    }
    val_metrics = classification_metrics(p_val, y_val, manifest.labels)
    doc: dict[str, Any] = {
        "checkpoint": {"phase": ckpt["phase"], "epoch": ckpt["epoch"]},
        "val": val_metrics,
        "holdout": {
            k: v
            for k, v in classification_metrics(p_held, y_held, manifest.labels).items()
            if k != "per_class"
        },
        "mismatch": {
            "stream": f"share {share} of listings declare a wrong category, uniform over the "
            "others; "
            "one photo per listing",
            "share": share,
            "target_precision": target_precision,
            "chosen_on": "holdout",
            "match_threshold": t,
            "holdout_at_threshold": {
                k: chosen[k] for k in ("precision", "recall", "false_flag_rate")
            },
            "val_at_threshold": at_threshold(curve_val, t),
            "val_at_threshold_by_share": by_share,
            "rule": chosen["rule"],
            "curve_val": curve_val,
            "curve_holdout": curve_held,
        },
        "command": _command(),
    }
    save_confusion(p_val, y_val, manifest.labels, out)
    save_curve_plot({"holdout": curve_held, "val": curve_val}, t, out / "mismatch_curve.png")
    doc["seconds"] = round(time.perf_counter() - started, 1)
    (out / "evaluation.json").write_text(json.dumps(doc, indent=1))
    _merge_json(out / "timings.json", {"evaluate": doc["seconds"]})
    if policy is not None:
        write_policy(policy, t)
    _print_evaluation(doc)
    return doc


def _print_evaluation(doc: dict[str, Any]) -> None:
    val, mm = doc["val"], doc["mismatch"]
    top5 = val.get("top5", float("nan"))
    print(
        f"val photos {val['photos']}: top-1 {val['top1']:.4f}, top-5 {top5:.4f}, "
        f"macro-category accuracy {val['macro_category_accuracy']:.4f}, "
        f"macro F1 {val['macro_f1']:.4f}"
    )
    for label, m in val["per_class"].items():
        print(
            f"  {label:<20} P {m['precision']:.3f}  R {m['recall']:.3f}  "
            f"F1 {m['f1']:.3f}  n {m['support']}"
        )
    v = mm["val_at_threshold"]
    print(
        f"mismatch flagging (share {mm['share']}): match_threshold {mm['match_threshold']:.4g} "
        f"({mm['rule']}, chosen on holdout) → val precision {v['precision']:.4f}, "
        f"recall {v['recall']:.4f}"
    )


def write_policy(path: Path, match_threshold: float) -> None:
    """Set `[category].match_threshold`, leaving every other line of the file as it is."""
    if not path.is_file():
        raise TrainingError(f"policy file {path} not found")
    doc = tomlkit.parse(path.read_text())
    if "category" not in doc:
        doc["category"] = tomlkit.table()
    doc["category"]["match_threshold"] = round(float(match_threshold), 6)
    path.write_text(tomlkit.dumps(doc))


def run_export(
    out: Path,
    *,
    prefix: str,
    ship_to: Path | None,
    force: bool,
    parity_photos: int,
    policy: Path | None = None,
) -> dict[str, Any]:
    manifest = Manifest.load(out)
    trained = _read_json(out / "train.json", "train")
    evaluation = _read_json(out / "evaluation.json", "evaluate")
    backbone, ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    net = backbone.net
    timings = _read_json(out / "timings.json", "train")
    val, mm = evaluation["val"], evaluation["mismatch"]
    contract = ModelContract(
        model_version=model_version(prefix, backbone.arch, net),
        labels=manifest.labels,
        preprocess=backbone.spec,
        training={
            "arch": backbone.arch,
            "pretrained": ckpt["weights"].rsplit("/", 1)[-1],
            "dataset": Path(manifest.root).name,
            "data_hash": manifest.data_hash,
            "photos": {
                "train": trained["train_photos"],
                "holdout": trained["holdout_photos"],
                "val": val["photos"],
            },
            "checkpoint": {"phase": ckpt["phase"], "epoch": ckpt["epoch"]},
            "validation": {
                k: val[k]
                for k in ("top1", "top5", "macro_category_accuracy", "macro_f1")
                if k in val
            },
            "mismatch": {
                "share": mm["share"],
                **{k: mm["val_at_threshold"][k] for k in ("precision", "recall")},
            },
            "thresholds": {"match_threshold": mm["match_threshold"]},
            "commands": {
                "train": trained["command"],
                "evaluate": evaluation["command"],
                "export": _command(),
            },
            "duration_s": timings,
            "seed": trained["config"]["seed"],
        },
    )
    path = to_onnx(net, contract, out / "model.onnx")
    val_items = manifest.split("val")
    root = Path(manifest.root)
    check = parity(
        net, path, [root / it.path for it in _spread(val_items, parity_photos)], backbone.spec
    )
    size_mb = path.stat().st_size / 2**20
    result: dict[str, Any] = {
        "model": str(path),
        "model_version": contract.model_version,
        "size_mb": round(size_mb, 2),
        "parity_max_abs_diff": check,
    }
    print(
        f"exported {path} ({size_mb:.1f} MB, {contract.model_version}); parity on "
        f"{int(check['photos'])} photos: probs {check['category_probs']:.2e}, "
        f"embedding {check['embedding']:.2e}"
    )
    if ship_to is not None:
        if size_mb > MAX_SHIPPED_MB:
            raise TrainingError(
                f"{path} is {size_mb:.1f} MB, over the {MAX_SHIPPED_MB} MB limit for shipping"
            )
        shipped = ship(
            path,
            ship_to,
            [root / it.path for it in val_items],
            manifest.labels,
            labels_of(val_items, manifest),
            force=force,
        )
        result["ship"] = shipped
        if shipped["shipped"]:
            print(f"shipped to {ship_to} (val top-1 {shipped['candidate']['top1']:.4f})")
            if policy is not None:
                write_policy(policy, mm["match_threshold"])
                print(f"{policy}: [category].match_threshold = {mm['match_threshold']:.4g}")
        else:
            print(
                f"not shipped: {ship_to} is as good or better on val "
                f"(top-1 {shipped['previous']['top1']:.4f} vs {shipped['candidate']['top1']:.4f})"
            )
    (out / "export.json").write_text(json.dumps(result, indent=1))
    return result


def run_quantize(out: Path, *, calibration_photos: int) -> dict[str, Any]:
    from training.quantize import compare, quantize

    manifest = Manifest.load(out)
    fp32 = out / "model.onnx"
    if not fp32.is_file():
        raise TrainingError(f"{fp32} not found: run `modq-train export` first")
    root = Path(manifest.root)
    calib = [root / it.path for it in _spread(manifest.split("train"), calibration_photos)]
    int8 = quantize(fp32, out / "model-int8.onnx", calib)
    val = manifest.split("val")
    result = compare(
        fp32, int8, [root / it.path for it in val], labels_of(val, manifest), manifest.labels
    )
    (out / "quantize.json").write_text(json.dumps(result, indent=1))
    for name in ("fp32", "int8"):
        r = result[name]
        print(
            f"{name}: val top-1 {r['top1']:.4f}, macro {r['macro_category_accuracy']:.4f}, "
            f"{r['images_per_second_2_threads']} img/s on 2 threads, {r['file_mb']} MB"
        )
    return result


def _merge_json(path: Path, update: dict[str, Any]) -> None:
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc.update(update)
    path.write_text(json.dumps(doc, indent=1))
