# Shared by the dependency layers' Makefiles. `sam build` (BuildMethod: makefile) runs
# `make -f layers/<name>/Makefile build-<LayerLogicalId>` with ARTIFACTS_DIR set; the layer is what lands in
# $(ARTIFACTS_DIR)/python. scripts/layers.py installs the layer's requirements at the versions of
# layers/constraints.txt (one lock for every layer), arm64 wheels only, without the runtime's boto3/botocore.
# LAYER_PYTHON: any Python >= 3.11 with pip (the top-level `make build` passes the tools venv's).
LAYER_DIR := $(dir $(abspath $(firstword $(MAKEFILE_LIST))))
LAYER_PYTHON ?= python3

build-%:
	$(LAYER_PYTHON) $(LAYER_DIR)../../scripts/layers.py build $(LAYER_DIR) "$(ARTIFACTS_DIR)"
