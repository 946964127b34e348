# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make demo   runs Pitcrew against its built-in sandbox (no credentials, no network)
#   make test   installs what is needed and runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: demo test lint bench fmt clean serve

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet
	@touch $@

demo: $(VENV)/.synced
	$(BIN)/pitcrew demo

serve: $(VENV)/.synced
	$(BIN)/pitcrew serve

# promtool checks the alerts in manifests/monitoring (fetched from Debian's prometheus package).
$(TOOLS)/bin/promtool: | $(UV)
	bash .ci/get-promtool

test: $(VENV)/.synced $(TOOLS)/bin/promtool
	$(BIN)/pytest

lint: $(VENV)/.synced
	$(BIN)/ruff check bot tests
	$(BIN)/ruff format --check bot tests
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(VENV)/.synced
	$(BIN)/ruff format bot tests
	$(BIN)/ruff check --fix bot tests

# make bench: every benchmark (~10 min); BENCH=intake,commands,rollouts runs some of them,
# BENCH_SCALE=0.1 runs them smaller (for development; the targets are for scale 1).
bench: $(VENV)/.synced
	BENCH="$(BENCH)" BENCH_SCALE="$(BENCH_SCALE)" $(BIN)/python -m tests.benchmarks

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .pytest_cache .ruff_cache
