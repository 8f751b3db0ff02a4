# The commands a person types. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: setup demo serve test unit e2e e2e-cold lint bench clean

CLIENTS := .venv-clients

setup: $(VENV)/.installed node_modules/.installed $(CLIENTS)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Clients that cannot share the main venv (instructor pins an older jiter than openai's): the e2e tests run them.
$(CLIENTS)/.installed: tests/clients/instructor-requirements.txt
	$(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/pip install --quiet --upgrade "pip==26.3"
	$(CLIENTS)/bin/pip install --quiet -r tests/clients/instructor-requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Start the emulator on localhost:$(PORT), offline, against the built-in fake upstream.
demo: setup
	$(BIN)/clinvk-local --fake-upstream --port $(PORT)

## Start the emulator on localhost:$(PORT) with the CLIs' own logins (or CLINVK_* upstream settings).
serve: setup
	$(BIN)/clinvk-local --port $(PORT)

## Everything CI runs: lint, type checks, template lint, unit and end-to-end tests.
test: setup lint
	$(BIN)/pytest -q

unit: setup
	$(BIN)/pytest -q tests/unit

e2e: setup
	$(BIN)/pytest -q tests/e2e

## The e2e suite with every CLI cold (test_warm is the warm pools' own).
e2e-cold: setup
	E2E_WARM_BACKENDS= $(BIN)/pytest -q tests/e2e --ignore=tests/e2e/test_warm.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(BIN)/hadolint Dockerfile

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(CLIENTS) node_modules .pytest_cache .mypy_cache .ruff_cache *.egg-info
