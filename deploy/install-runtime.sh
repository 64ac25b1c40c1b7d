#!/bin/sh
# Install modq's runtime from its wheel: the steps both images run (Dockerfile) and that
# tests/test_wheel_install.py runs into a fresh venv, so they are tested without a container
# engine.
#
#   PYTHON=python3 deploy/install-runtime.sh [--gpu] dist/modq-*.whl
#
# - rapidocr-onnxruntime asks for opencv-python, whose cv2 links libGL, libX11 and glib (GUI
#   libraries python:3.11-slim lacks: `import cv2` fails there). opencv-python-headless is
#   the same cv2, same version, without them: it replaces it.
# - --gpu: onnxruntime-gpu replaces onnxruntime (both ship the `onnxruntime` module, so only
#   one may be installed; docs/deployment.md), and the CUDA provider must be compiled in.
# - torch stays out: it belongs to the `train` extra (modq-train), not to the runtime.
set -eu
PYTHON=${PYTHON:-python3}
gpu=no
if [ "${1:-}" = "--gpu" ]; then gpu=yes; shift; fi
[ $# -ge 1 ] || { echo "usage: install-runtime.sh [--gpu] WHEEL [PIP-ARGS...]" >&2; exit 2; }

pip() { "$PYTHON" -m pip --disable-pip-version-check "$@"; }

pip install -q "$@"
opencv=$(pip show opencv-python 2>/dev/null | sed -n 's/^Version: //p')
if [ -n "$opencv" ]; then
    pip uninstall -q -y opencv-python
    pip install -q "opencv-python-headless==$opencv"
fi
if [ "$gpu" = yes ]; then
    pip uninstall -q -y onnxruntime
    pip install -q --no-deps --force-reinstall "onnxruntime-gpu>=1.18"
    "$PYTHON" -c "import onnxruntime as o; p = o.get_available_providers(); \
assert 'CUDAExecutionProvider' in p, p"
fi
# Fail the build, not the first listing: every runtime import works, torch is absent.
"$PYTHON" -c "import cv2, onnxruntime, rapidocr_onnxruntime, modq.cli.main, modq.tasks.app"
if "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "torch was installed into the runtime" >&2
    exit 1
fi
