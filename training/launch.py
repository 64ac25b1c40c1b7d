"""The `modq-train` entry point: checks that the train extra is installed before anything
imports torch, so a runtime-only install (the wheel, the image) gets one line naming the
install command instead of a ModuleNotFoundError traceback."""

from __future__ import annotations

import importlib.util
import sys

# Modules of the `train` extra that modq-train imports at start-up.
REQUIRED = ("torch", "torchvision", "onnx", "efficientnet_lite_pytorch")


def missing_modules() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def run() -> None:
    missing = missing_modules()
    if missing:
        print(
            f"modq-train: needs the train extra ({', '.join(missing)} not installed): "
            "pip install 'modq[train]'",
            file=sys.stderr,
        )
        sys.exit(1)
    from training.cli import main

    main()
