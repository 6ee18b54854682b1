# The README's commands. A fresh machine needs only Python >= 3.11 and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
BIN := $(VENV)/bin
UV := $(TOOLS)/uv/bin/uv
export SAM_CLI_TELEMETRY := 0
# Every environment is installed from a committed lock (README, "Dependencies and locks"): uv never resolves
# on install (--locked also fails when a lock is stale against its inputs) and never downloads a Python.
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1
# No region here: deploys use your profile's (or AWS_REGION), as samconfig.toml says; the dev stack and the
# tests set their own.

.PHONY: dev test soak faults lint unit integration e2e bench build lock check-locks smoke deploy clean fmt openapi docs

# uv itself, from locks/uv.txt (every wheel's hash): the only thing pip installs.
$(UV): locks/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	rm -rf $(TOOLS)/uv
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r locks/uv.txt
	@touch $@

# The development and test environment: uv.lock (pyproject.toml's dependencies and its dev extra).
$(BIN)/.installed: uv.lock pyproject.toml $(UV)
	$(UV) sync --locked --extra dev --python $(PYTHON) --quiet
	@touch $@

# Tool environments, each from its own lock (locks/tools/<name>/uv.lock), because each pins lines the others
# (or ours) cannot share:
#   sam          aws-sam-cli (pins boto3 and pydantic exactly), and the pip that builds the layers
#   checkov      the security scan of template.yaml in make lint (its own boto3/pydantic lines, like SAM;
#                the suppressions sit next to their resources and are listed in docs/operations.md)
#   schemathesis the generated-case tests of docs/openapi.json (its own pytest/hypothesis/jsonschema lines)
#   mcp1, mcp2   the official MCP clients the e2e tests drive the dev stack with (1.x and 2.x cannot share)
TOOL_ENVS := sam checkov schemathesis mcp1 mcp2
$(TOOLS)/%/.installed: locks/tools/%/uv.lock locks/tools/%/pyproject.toml $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(TOOLS)/$* $(UV) sync --locked --project locks/tools/$* --python $(PYTHON) --quiet
	@touch $@
SAM := $(TOOLS)/sam/.installed
CHECKOV := $(TOOLS)/checkov/.installed
SCHEMATHESIS := $(TOOLS)/schemathesis/.installed
MCP_CLIENTS := $(TOOLS)/mcp1/.installed $(TOOLS)/mcp2/.installed

venv: $(BIN)/.installed

dev: $(BIN)/.installed
	$(BIN)/devstack

lint: $(BIN)/.installed $(SAM) $(CHECKOV)
	$(BIN)/python scripts/locks.py check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(TOOLS)/sam/bin/sam validate --lint --template template.yaml
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

integration: $(BIN)/.installed $(SAM) $(CHECKOV) $(MCP_CLIENTS) $(SCHEMATHESIS)  # test_locks checks every environment
	$(BIN)/pytest -q -m "not soak" tests/integration

e2e: $(BIN)/.installed $(MCP_CLIENTS) $(SCHEMATHESIS)
	$(BIN)/pytest -q -m "not soak" tests/e2e

# The OpenAPI document, generated from the code (session_service.edges.openapi): docs/openapi.json and the copy the
# deployed OpenApiFunction serves. tests/unit/test_openapi.py fails when either differs from the code.
openapi: $(BIN)/.installed
	$(BIN)/python -m session_service.edges.openapi docs/openapi.json functions/openapi/openapi.json

# The docs' lists that mirror template.yaml (scripts/docs_lists.py; tests/unit/test_docs_lists.py checks them).
docs: $(BIN)/.installed
	$(BIN)/python scripts/docs_lists.py

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
build: $(SAM)
	PATH="$(CURDIR)/$(TOOLS)/sam/bin:$$PATH" LAYER_PYTHON="$(CURDIR)/$(TOOLS)/sam/bin/python" $(TOOLS)/sam/bin/sam build --no-cached
	$(TOOLS)/sam/bin/python scripts/layers.py check --build-dir .aws-sam/build

# The only way a lock changes (README, "Dependencies and locks"): uv.lock, every tool's lock, then
# layers/constraints.txt from uv.lock. Existing pins are kept unless an input asks otherwise; UPGRADE=1 takes
# the newest versions the inputs allow. Then run `make test` and commit the locks.
lock: $(UV)
	$(PYTHON) scripts/locks.py lock $(if $(UPGRADE),--upgrade)

# Every lock current against its inputs, and every environment installed here exactly what its lock says
# (also the first step of make lint).
check-locks: $(BIN)/.installed
	$(BIN)/python scripts/locks.py check

# The e2e contract tests against a deployed stack (docs/operations.md, first deploy). KEY2, another project's
# key, adds the cross-project checks; tests that need the local E2B API's controls skip, saying so.
smoke: $(BIN)/.installed
	@test -n "$(API)" -a -n "$(KEY)" || { echo "usage: make smoke API=<ApiUrl output> KEY=<ssk_ key> [KEY2=<ssk_ key>]"; exit 2; }
	@SMOKE_API_URL="$(API)" SMOKE_API_KEY="$(KEY)" SMOKE_API_KEY2="$(KEY2)" $(BIN)/pytest -q -rs tests/e2e/test_http_contract.py tests/e2e/test_two_tenants.py

deploy: build
	$(TOOLS)/sam/bin/sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .devstack .pytest_cache .mypy_cache .ruff_cache
