# Developer entry points. Each target creates or reuses .venv (only python3 is
# needed on the machine) and re-installs only when setup.cfg, setup.py or a
# requirements file is newer than .venv/.installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra pytest arguments, e.g. make test-worker PYTEST_ARGS='-k config -x'
PYTEST_ARGS ?=
LINT_PATHS := $(wildcard rescue_flow tests bench tools nova_driver)

.PHONY: help demo test test-worker lint genconfig genconfig-nova bench

help:
	@echo "make demo       rescue-flow demo: rescue, unrescue and a rolled-back failure on a simulated host, in one process, no setup"
	@echo "make test       every test: the worker's (test-worker), then the Nova driver's (test-nova)"
	@echo "make test-worker the worker's suite (RabbitMQ and PostgreSQL tests skip without them; see README.md, .ci/run)"
	@echo "make lint       ruff check $(LINT_PATHS)"
	@echo "make genconfig  regenerate etc/rescue-flow.conf.sample"
	@echo "make docs       regenerate docs/config-reference.md"
	@echo "make venv-nova  build .venv-nova: nova 27.5.1, compute-hyperv 16.0.0, os-win 5.9.0 (2023.1 constraints) + nova_driver/"
	@echo "make test-nova  the Nova driver's tests in .venv-nova: unit, RabbitMQ, real Nova + the real worker (nova_driver/tests)"
	@echo "make genconfig-nova regenerate nova_driver/etc/rescue-flow-nova.conf.sample"
	@echo "make bench      benchmarks B1-B6 (~12 min; B2, B3, B5 need RabbitMQ, B6 .venv-nova): bench/results/latest.json, docs/benchmarks.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg setup.py requirements.txt test-requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e . -r test-requirements.txt
	touch $@

demo: $(STAMP)
	$(BIN)/rescue-flow demo

# Both suites, side by side (-j2: the Nova environment builds and the Nova
# tests run while the worker's suite runs; -O: each suite's output comes out
# whole when it ends), and both even when one fails (-k); make test fails if
# either did. On the 2-core CI machine this takes ~9 min instead of ~11.5.
test:
	@$(MAKE) --no-print-directory -k -j2 --output-sync=target test-worker test-nova

test-worker: $(STAMP)
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

# The compute driver (nova_driver/, import package rescue_flow_nova) is tested
# in a nova-compute-like environment of its own, .venv-nova: Nova 2023.1's
# pins conflict with the worker's, so the two never share a venv. Its Nova and
# friends are re-installed only when tools/nova-venv.sh or the constraints
# change; the driver (installed, not editable: it adds a package to
# nova/virt/) whenever one of its files changes. The tests run the real
# worker from .venv, as a separate process.
# Extra pytest arguments, e.g. make test-nova NOVA_PYTEST_ARGS='-k rescue -x';
# NOVA_TESTS narrows the run to some files, e.g.
# make test-nova NOVA_TESTS=nova_driver/tests/unit/test_configdrive.py
NOVA_VENV := .venv-nova
NOVA_STAMP := $(NOVA_VENV)/.installed
NOVA_DEPS_STAMP := $(NOVA_VENV)/.installed-nova
NOVA_PYTEST_ARGS ?=
NOVA_TESTS ?= nova_driver/tests
NOVA_DRIVER_FILES := $(shell find nova_driver \( -path nova_driver/tests -o -path nova_driver/build \
	-o -name '*.egg-info' \) -prune -o -type f \
	\( -name '*.py' -o -name '*.cfg' -o -name '*.toml' -o -name '*.txt' -o -name '*.in' \) \
	-print 2>/dev/null)

.PHONY: venv-nova test-nova

$(NOVA_DEPS_STAMP): tools/nova-venv.sh nova_driver/upper-constraints-2023.1.txt
	PYTHON="$(PYTHON)" bash tools/nova-venv.sh $(NOVA_VENV) --deps
	touch $@

$(NOVA_STAMP): $(NOVA_DEPS_STAMP) $(NOVA_DRIVER_FILES)
	PYTHON="$(PYTHON)" bash tools/nova-venv.sh $(NOVA_VENV) --driver
	touch $@

venv-nova: $(NOVA_STAMP)

# -P: the repository root (which holds rescue_flow/) is not put on sys.path,
# so the driver is tested as installed, importing only what Nova's
# environment has.
test-nova: $(NOVA_STAMP) $(STAMP)
	@# Nova builds the rescue config drive with mkisofs_cmd (genisoimage), as
	@# on a nova-compute host; the tests read it back with isoinfo.
	@command -v genisoimage >/dev/null && command -v isoinfo >/dev/null || { \
		echo "make test-nova: genisoimage and isoinfo are needed (Nova builds the rescue config drive with them): apt-get install genisoimage" >&2; exit 2; }
	RESCUE_FLOW_BIN="$(CURDIR)/$(BIN)" $(NOVA_VENV)/bin/python -P -m pytest \
		-c nova_driver/tests/pytest.ini \
		--rootdir nova_driver/tests $(NOVA_PYTEST_ARGS) $(NOVA_TESTS)

genconfig-nova: $(NOVA_STAMP)
	$(NOVA_VENV)/bin/oslo-config-generator \
		--config-file nova_driver/etc/oslo-config-generator/rescue-flow-nova.conf
