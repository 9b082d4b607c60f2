# `make run` and `make test` set everything up on a fresh machine (Python 3.11+ and make).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The job image's exact versions: the tests run what the image runs.
CONSTRAINTS := containers/constraints.txt
# One worker per core; the suite is seconds of CPU, its slow tests wait on processes and timers.
PYTEST_WORKERS ?= auto

# checkov and the SAM CLI pin boto3 and friends exactly: each gets a virtual environment of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
SAM_VENV := .venv-sam
SAM_VERSION := 1.170.0
# Named by the version: changing SAM_VERSION installs it again.
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_VERSION)
# The stack `make image` pushes to (samconfig.toml's stack_name); IMAGE_TAG names the image by the
# content of its build context, so an unchanged image is not pushed again.
STACK ?= cvpipe
IMAGE_TAG ?= $(shell cat containers/Dockerfile containers/pyproject.toml containers/requirements.lock \
	$$(find containers/cvjobs -name '*.py' | LC_ALL=C sort) | sha256sum | cut -c1-16)

.PHONY: install run check test test-fast schemas bench clean image sam-check tools bytecode

$(STAMP): pyproject.toml containers/pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cvpipe needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_VERSION)'
	@touch $@

install: $(STAMP)

run: $(STAMP) bytecode
	$(BIN)/cvpipe run

# The project's own modules compiled ahead, as an installed package's are: where the environment sets
# PYTHONDONTWRITEBYTECODE, every run would otherwise compile them again (about 0.15 s of a small run).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src containers/cvjobs functions

# Lint, format and types. The suite itself holds the checks of the definition and the template
# (cfn-lint, statelint, placeholders, botocore parameter validation).
# Each Lambda function is an import root of its own, with the shared layer beside it, as deployed.
FUNCTION_DIRS := $(filter-out functions/shared/,$(wildcard functions/*/))

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for dir in functions/shared/workflow_documents $(FUNCTION_DIRS); do \
		MYPYPATH=functions/shared $(BIN)/mypy $$dir || exit 1; \
	done

# The JSON Schemas of the workflow's documents, from their models (a test checks they are current).
schemas: $(STAMP)
	PYTHONPATH=functions/shared $(BIN)/python -m workflow_documents.schemas schemas

# The tools the suite runs from environments of their own: checkov, and the SAM CLI (sam validate --lint,
# sam build; tests/static/test_sam.py).
tools: $(CHECKOV) $(SAM_STAMP)

# The environments install side by side; then a cold `sam build` (a minute of pip work) runs beside
# `make check` rather than beside the suite's timing-sensitive tests, in which it is a cached build of
# seconds.
test:
	@$(MAKE) --no-print-directory -j3 install tools
	@$(MAKE) --no-print-directory -j2 check sam-check
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "unit and not integration and not e2e" -n $(PYTEST_WORKERS)

# SAM's own checks alone (also part of `make test`): `sam validate --lint`, and `sam build`, which needs
# the functions' Python (found on PATH or in pyenv); dependencies are cached in .venv-sam between runs.
sam-check: $(STAMP) $(SAM_STAMP)
	$(BIN)/pytest -q tests/static/test_sam.py

# Build the job image for linux/amd64, push it to the stack's repository and print the JobImageUri to deploy.
image:
	STACK=$(STACK) IMAGE_TAG=$(IMAGE_TAG) containers/push-image.sh

bench: $(STAMP) bytecode
	$(BIN)/python bench/bench_gridsearch.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SAM_VENV) .cvpipe .pytest_cache .mypy_cache .ruff_cache
