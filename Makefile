# The two commands a newcomer runs (each sets up its own venv in .venv from this repo alone):
#   make run     -> edgebench run on the bundled default model and data (pass options with ARGS="...")
#   make test    -> the test suite (what CI runs via .ci/run)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint install install-test clean modelopt-venv test-arm64

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.core-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.test-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt -e '.[test,train,openvino,openvino-int8,ncnn,ncnn-export,tflite,tflite-export,coreml,coreml-export,report]'
	@touch $@ $(VENV)/.core-installed

install: $(VENV)/.core-installed
install-test: $(VENV)/.test-installed

run: $(VENV)/.core-installed
	$(BIN)/edgebench run $(ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The emulated arm64 check (bench/emulate, docs/arm64.md): root, qemu user mode, minutes; not part of `make test`
test-arm64: | $(BIN)/python  # order-only: runs in the existing venv, never reinstalls it
	EDGEBENCH_ARM64=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_emulate.py $(PYTEST_ARGS)

# TensorRT INT8 (calibration/modelopt.py): NVIDIA ModelOpt pins its own onnx and onnxruntime-gpu, so it gets a venv of
# its own, where calibration.modelopt looks for it (<edgebench cache>/modelopt-venv; or set EDGEBENCH_MODELOPT_PYTHON)
MODELOPT_VENV ?= $(or $(EDGEBENCH_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edgebench)/modelopt-venv
MODELOPT_PIN  ?= nvidia-modelopt[onnx]==0.47.0

modelopt-venv:
	$(PYTHON) -m venv $(MODELOPT_VENV)
	$(MODELOPT_VENV)/bin/python -m pip --disable-pip-version-check -q install -c constraints.txt '$(MODELOPT_PIN)'
	$(MODELOPT_VENV)/bin/python -c "import modelopt.onnx.quantization" && echo "ModelOpt ready: $(MODELOPT_VENV)"

clean:
	rm -rf $(VENV) runs .pytest_cache
