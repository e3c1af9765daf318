# Two set-up commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-slow test-all bench install extras clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned first so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The heavy optional extras CI tests too: engines (MNN, ncnn, TFLite, ExecuTorch), serving (KServe, tritonclient),
# image calibration, and PyTriton's tritonserver in its own venv (it needs numpy<2). Their tests skip without them.
EXTRAS ?= mnn,ncnn,tflite,executorch,serve,images,llm,peers
EXTRAS_STAMP := $(VENV)/.extras-installed
$(EXTRAS_STAMP): $(STAMP) pyproject.toml scripts/install-triton.sh
	$(BIN)/pip install --quiet "torch==2.13.0" -e ".[dev,$(EXTRAS)]"
	scripts/install-triton.sh
	touch $(EXTRAS_STAMP)

extras: $(EXTRAS_STAMP)

demo: $(STAMP)
	$(BIN)/onnxdeploy demo --target openvino

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-triton demo-out
