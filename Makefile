# The README's commands. A fresh machine needs only Python >= 3.11 and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
BIN := $(VENV)/bin
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: dev test soak lint unit integration e2e bench build deploy clean fmt

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# aws-sam-cli pins boto3 and pydantic exactly: it lives in its own virtualenv, never in the runtime set.
$(TOOLS)/bin/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet aws-sam-cli
	@touch $@

venv: $(BIN)/.installed

dev: $(BIN)/.installed
	$(BIN)/devstack

lint: $(BIN)/.installed $(TOOLS)/bin/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(TOOLS)/bin/sam validate --lint --template template.yaml

test: lint
	$(BIN)/pytest -q -m "not soak"

soak: $(BIN)/.installed
	$(BIN)/pytest -q -m soak

unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

integration: $(BIN)/.installed
	$(BIN)/pytest -q tests/integration

e2e: $(BIN)/.installed
	$(BIN)/pytest -q tests/e2e

fmt: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py
	$(BIN)/python bench/key_load.py

build: $(TOOLS)/bin/.installed
	PYENV_VERSION=$${PYENV_VERSION:-3.11.7:3.13.0} $(TOOLS)/bin/sam build

deploy: build
	$(TOOLS)/bin/sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .devstack .pytest_cache .mypy_cache .ruff_cache
