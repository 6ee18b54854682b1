# The README's commands. A fresh machine needs only Python >= 3.11 and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
BIN := $(VENV)/bin
export SAM_CLI_TELEMETRY := 0
# No region here: deploys use your profile's (or AWS_REGION), as samconfig.toml says; the dev stack and the
# tests set their own.

.PHONY: dev test soak faults lint unit integration e2e bench build lock smoke deploy clean fmt openapi

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

# The official MCP clients the e2e tests drive the dev stack with: 1.x and 2.x cannot share one environment
# (nor ours: they pin their own httpx/pydantic lines), so each gets its own.
MCP_CLIENTS := $(TOOLS)/mcp1/bin/.installed $(TOOLS)/mcp2/bin/.installed
$(TOOLS)/mcp1/bin/.installed:
	$(PYTHON) -m venv $(TOOLS)/mcp1
	$(TOOLS)/mcp1/bin/pip install --quiet 'mcp==1.30.0'
	@touch $@
$(TOOLS)/mcp2/bin/.installed:
	$(PYTHON) -m venv $(TOOLS)/mcp2
	$(TOOLS)/mcp2/bin/pip install --quiet 'mcp==2.3.0'
	@touch $@

# schemathesis (the generated-case tests of docs/openapi.json, tests/e2e/test_schemathesis.py) pins its own
# pytest, hypothesis and jsonschema lines and registers a pytest plugin: it gets its own environment.
SCHEMATHESIS := $(TOOLS)/schemathesis/bin/.installed
$(SCHEMATHESIS):
	$(PYTHON) -m venv $(TOOLS)/schemathesis
	$(TOOLS)/schemathesis/bin/pip install --quiet 'schemathesis==4.32.5'
	@touch $@

# checkov, the security scan of template.yaml in make lint (zero failed checks; the suppressions sit next to
# their resources with a reason each and are listed in docs/operations.md). It pins its own boto3 and
# pydantic lines, like aws-sam-cli: its own environment.
CHECKOV := $(TOOLS)/checkov/bin/.installed
$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet 'checkov==3.3.30'
	@touch $@

venv: $(BIN)/.installed

dev: $(BIN)/.installed
	$(BIN)/devstack

lint: $(BIN)/.installed $(TOOLS)/bin/.installed $(CHECKOV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(TOOLS)/bin/sam validate --lint --template template.yaml
	$(TOOLS)/checkov/bin/checkov --file template.yaml --framework cloudformation --skip-download --quiet --compact

test: lint $(MCP_CLIENTS) $(SCHEMATHESIS)
	$(BIN)/pytest -q -m "not soak"

soak: $(BIN)/.installed
	$(BIN)/pytest -q -m soak

# The fault suite alone (in make test too): Redis, moto and the local E2B API hung, killed and restarted
# under a dev stack; its figures are printed at the end. FAULT_SCENARIO_ROUNDS, FAULT_HISTORY_SECONDS.
faults: $(BIN)/.installed
	$(BIN)/pytest -q -m "not soak" tests/faults

unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

integration: $(BIN)/.installed
	$(BIN)/pytest -q -m "not soak" tests/integration

e2e: $(BIN)/.installed $(MCP_CLIENTS) $(SCHEMATHESIS)
	$(BIN)/pytest -q -m "not soak" tests/e2e

# The OpenAPI document, generated from the code (session_service.openapi): docs/openapi.json and the copy the
# deployed OpenApiFunction serves. tests/unit/test_openapi.py fails when either differs from the code.
openapi: $(BIN)/.installed
	$(BIN)/python -m session_service.openapi docs/openapi.json functions/openapi/openapi.json

fmt: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# P1-P5 of issue 9 and the other issues' rows, each with its goal and PASS/FAIL (bench/run.py; about 5 min).
bench: $(BIN)/.installed
	$(BIN)/python bench/key_load.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/encryption.py

# No python3.13 needed: the dependency layers are built by scripts/layers.py (their Makefiles) with the tools
# venv's pip, as arm64 python3.13 wheels from layers/constraints.txt; the functions and the core layer are
# copied, for which SAM only wants some `python` on PATH (the tools venv's). The check reads what was built.
# --no-cached: SAM's cache keys a layer on its folder, but the lock lives outside it (layers/constraints.txt).
build: $(TOOLS)/bin/.installed
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" LAYER_PYTHON="$(CURDIR)/$(TOOLS)/bin/python" $(TOOLS)/bin/sam build --no-cached
	$(TOOLS)/bin/python scripts/layers.py check --build-dir .aws-sam/build

# layers/constraints.txt: every layer's dependencies resolved once, at the versions .venv (the tests) has.
lock: $(BIN)/.installed
	$(BIN)/python scripts/layers.py lock

# The e2e contract tests against a deployed stack (docs/operations.md, first deploy). KEY2, another project's
# key, adds the cross-project checks; tests that need the local E2B API's controls skip, saying so.
smoke: $(BIN)/.installed
	@test -n "$(API)" -a -n "$(KEY)" || { echo "usage: make smoke API=<ApiUrl output> KEY=<ssk_ key> [KEY2=<ssk_ key>]"; exit 2; }
	@SMOKE_API_URL="$(API)" SMOKE_API_KEY="$(KEY)" SMOKE_API_KEY2="$(KEY2)" $(BIN)/pytest -q -rs tests/e2e/test_http_contract.py tests/e2e/test_two_tenants.py

deploy: build
	$(TOOLS)/bin/sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .devstack .pytest_cache .mypy_cache .ruff_cache
