# `make run` and `make test` set everything up on a fresh machine (Python 3.11+ and make).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The job image's exact versions: the tests run what the image runs.
CONSTRAINTS := containers/constraints.txt
# One worker per core; the suite is seconds of CPU, its slow tests wait on processes and timers.
PYTEST_WORKERS ?= auto

.PHONY: install run check test test-fast bench clean

$(STAMP): pyproject.toml containers/pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cvpipe needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/cvpipe run

# Lint, format and types. The suite itself holds the checks of the definition and the template
# (cfn-lint, statelint, placeholders, botocore parameter validation).
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

test-fast: $(STAMP)
	$(BIN)/pytest -q -m unit -n $(PYTEST_WORKERS)

bench: $(STAMP)
	$(BIN)/python bench/bench_gridsearch.py

clean:
	rm -rf $(VENV) .cvpipe .pytest_cache .mypy_cache .ruff_cache
