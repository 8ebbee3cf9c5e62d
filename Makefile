# Developer entry points. Each target creates or reuses .venv (only python3 is
# needed on the machine) and re-installs only when setup.cfg, setup.py or a
# requirements file is newer than .venv/.installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k config -x'
PYTEST_ARGS ?=
LINT_PATHS := $(wildcard rescue_flow tests bench tools)

.PHONY: help demo test lint genconfig bench

help:
	@echo "make demo       seed a simulated Hyper-V host and show it (or run 'rescue-flow demo')"
	@echo "make test       run the test suite (broker tests skip without RabbitMQ; see .ci/run)"
	@echo "make lint       ruff check $(LINT_PATHS)"
	@echo "make genconfig  regenerate etc/rescue-flow.conf.sample"
	@echo "make bench      benchmarks B1-B5 (~10 min; B2, B3, B5 need RabbitMQ): bench/results/latest.json, docs/benchmarks.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg setup.py requirements.txt test-requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e . -r test-requirements.txt
	touch $@

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/demo-seed.sh

test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) tests

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

genconfig: $(STAMP)
	PYTHON="$(CURDIR)/$(BIN)/python" bash tools/genconfig.sh etc/rescue-flow.conf.sample

# Extra arguments, e.g. make bench BENCH_ARGS='--quick' or BENCH_ARGS='--only B1,B5'.
# The broker is $RESCUE_FLOW_RABBIT_URL (else rabbit://guest:guest@127.0.0.1:5672/);
# without one, B2, B3 and B5 are recorded as skipped.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# docs/config-reference.md is generated from rescue_flow.config.list_opts();
# tests/unit/test_docs.py fails when it is stale.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python tools/gen-config-reference.py docs/config-reference.md
