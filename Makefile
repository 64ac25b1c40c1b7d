# modq: `make demo` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real photos live beside the repository and are never copied into it.
export MODQ_DATASETS_DIR ?= $(abspath ../shared/datasets)

.PHONY: install install-train demo test test-fast test-integration test-system test-services soak lint format typecheck model bench bench-gpu bench-gpu-dry wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# torch + torchvision from PyPI (the CUDA build, which runs on CPU too): about a minute.
$(VENV)/.train: $(VENV)/.runtime
	$(BIN)/pip install -q -e ".[dev,train]"
	touch $@

install: $(VENV)/.runtime
install-train: $(VENV)/.train

demo: install
	$(BIN)/modq demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# PostgreSQL and Redis on 127.0.0.1 (started when down) and Debian's chromium (installed when
# missing): a fresh machine needs nothing installed by hand first.
test-services:
	bash scripts/test-services.sh

# Every tier (unit, integration, system): what CI runs (.ci/run) and what a merge must pass.
test: install-train test-services lint typecheck
	$(BIN)/pytest

# The unit tier, run on every change: no PostgreSQL, Redis, datasets, browser or child
# process (a test that reaches one fails), no torch: about 23 s of CPU (docs/testing.md).
test-fast: install
	$(BIN)/pytest -m unit -q

# PostgreSQL, Redis, worker processes, the shipped models and the datasets.
test-integration: install-train test-services
	$(BIN)/pytest -m integration

# The browser, fault injection, the installed wheel, the demo, training end to end.
test-system: install-train test-services
	$(BIN)/pytest -m system

# The wheel operators install (models, policy and migrations inside): dist/modq-*.whl.
wheel: install
	rm -rf dist build
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .

# 20,000 listings, 5 % hostile photos, through a real worker on its own Redis and PostgreSQL
# (tests/faults/test_soak.py; MODQ_SOAK_N=2000 for a shorter one, MODQ_SOAK_PROCESSES=2 for
# a supervised worker of two processes). Results: docs/reliability.md.
soak: install
	MODQ_SOAK=1 $(BIN)/pytest -s -q tests/faults/test_soak.py

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Retrain the shipped model from ../shared/datasets (about 40 minutes on 2 cores).
# Train a candidate (category model, then its prohibited head and the policy with the
# thresholds chosen for it), rebuild the out-of-fold scores of the shipped head, and let the
# ship gate decide: `compare` copies the candidate and its policy over the shipped ones only
# when it passes (docs/training.md); a refusal stops here with exit status 1.
SHIPPED_MODEL = modq/assets/models/modq-listings.onnx
SHIPPED_POLICY = modq/assets/policies/default.toml
PROHIBITED = --data $(MODQ_DATASETS_DIR)/prohibited-v2 --benign $(MODQ_DATASETS_DIR)/listings-v1
model: install-train
	$(BIN)/modq-train all --data $(MODQ_DATASETS_DIR)/listings-v1 --out runs/listings-v1 --exclude-leaked
	$(BIN)/modq-train add-prohibited-head --model runs/listings-v1/model.onnx \
		--out runs/listings-v1/candidate.onnx $(PROHIBITED) --features avg+max \
		--policy $(SHIPPED_POLICY) --policy-out runs/listings-v1/policy.toml
	$(BIN)/modq-train prohibited-oof --model $(SHIPPED_MODEL) $(PROHIBITED)
	MODQ_POLICY_PATH=$(SHIPPED_POLICY) \
		$(BIN)/modq-train compare runs/listings-v1/candidate.onnx --against $(SHIPPED_MODEL) \
		--split val+oof --candidate-policy runs/listings-v1/policy.toml \
		--out runs/listings-v1/compare --ship-to $(SHIPPED_MODEL)
	$(BIN)/python -m training.classifier_int8 --model $(SHIPPED_MODEL)

bench: install
	$(BIN)/python bench/bench_pipeline.py

# On an NVIDIA machine: onnxruntime-gpu + nvidia-nvimgcodec-cu12 from the wheels in ./.whl
# (gitignored), then providers x batch sizes x decoders x processes (docs/performance.md).
WHEELS ?= .whl
bench-gpu: install
	$(BIN)/python bench/bench_gpu.py --install-from $(WHEELS)

bench-gpu-dry: install
	$(BIN)/python bench/bench_gpu.py --dry-run

clean:
	rm -rf $(VENV) .modq-data .pytest_cache .mypy_cache .ruff_cache
