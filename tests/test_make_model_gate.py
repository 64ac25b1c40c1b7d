"""`make model` ships only through the gate: training writes a candidate under runs/, and the
only step that writes the shipped model is `modq-train compare --ship-to`, which copies
nothing on a refusal (tests/test_compare_gate.py::test_cli_ships_only_what_passes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = "modq/assets/models/modq-listings.onnx"


def _recipe() -> list[str]:
    done = subprocess.run(
        ["make", "-n", "-W", ".venv/bin/python", "--no-print-directory", "model",
         "BIN=/bin", "VENV=/nonexistent"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout.replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if "modq-train" in line]


def test_make_model_ships_only_through_the_gate() -> None:
    steps = _recipe()
    names = [s.split("modq-train ", 1)[1].split()[0] for s in steps]
    assert names == ["all", "add-prohibited-head", "prohibited-oof", "compare"]
    train, head, oof, gate = steps
    assert "--ship-to" not in train and SHIPPED not in train
    assert "--out runs/listings-v1/candidate.onnx" in head and "--policy-out" in head
    assert f"--model {SHIPPED}" in oof
    assert gate.split("compare ", 1)[1].startswith("runs/listings-v1/candidate.onnx")
    assert f"--against {SHIPPED}" in gate and f"--ship-to {SHIPPED}" in gate
    assert "--split val+oof" in gate and "--candidate-policy runs/listings-v1/policy.toml" in gate
