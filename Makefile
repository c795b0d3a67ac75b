# The README's two commands are `make demo` and `make test`; the rest serve them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo serve test test-fast lint smoke lab-deps browser-deps lab-up lab-down bench bench-chains scale clean demo-clean

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/lambda-service demo $(DEMO_ARGS)

demo-clean: venv
	$(BIN)/python -c "from pathlib import Path; from lambda_testbed.demo import kill_processes_under as k; print(k(Path('.lambda/demo').resolve()), 'demo processes killed')"
	rm -rf .lambda/demo

serve: venv
	$(BIN)/lambda-service serve

# Lab tests need root and ip netns: install what they need when we can.
lab-deps: venv
	@if [ "$$(id -u)" = 0 ]; then VENV=$(VENV) scripts/install-lab-deps.sh; \
	else echo "not root: lab tests will be skipped (they need root and ip netns)"; fi

# The web page's tests drive Debian's headless chromium: install it when we can.
browser-deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/install-browser-deps.sh; \
	else echo "not root: the browser tests will be skipped unless chromium and chromium-driver are installed"; fi

# Two pytest runs side by side: the demo's loopback addresses, and hosts of their own
# (scripts/run-tests.sh).
test: venv lab-deps browser-deps
	PATH=$(CURDIR)/$(BIN):$$PATH PYTEST=$(BIN)/pytest scripts/run-tests.sh $(PYTEST_ARGS)

test-fast: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m "not lab and not slow" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production playbooks roles

smoke: venv lab-deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m lambda_testbed.lab.smoke

lab-up: venv lab-deps
	$(BIN)/lambda-service lab up $(LAB_ARGS)

lab-down: venv
	$(BIN)/lambda-service lab down $(LAB_ARGS)

bench: venv lab-deps
	scripts/install-bench-deps.sh
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Only the start's chains, one after another against side by side, on the demo.
bench-chains: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks.run chains $(BENCH_ARGS)

# The control plane at scale with faults (benchmarks/README.md, part 6): PostgreSQL at
# 127.0.0.1:5432 and rabbitmq-server installed; SCALE_ARGS="--quick" for the short version.
scale: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .lambda build *.egg-info .pytest_cache .ruff_cache
