# The two entry points of the README: `make demo` (the whole loop, no cluster needed) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint install crd

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch from the pinned release first: a bare `torch` requirement would pull a multi-GB CUDA build.
	# scripts/torch_pin.py keeps the plain pin where it resolves to a CPU wheel (a local +cpu wheel, macOS) and
	# switches to PyTorch's CPU index where it would pick the CUDA build (Linux from PyPI).
	$(PY) -m pip install -q $$($(PY) scripts/torch_pin.py 2.13.0)
	# llama-cpp-python is an sdist: llama.cpp compiles here (~4 min of 2 cores; pip caches the wheel). Portable x86-64
	# flags (AVX2/FMA/F16C, not -march=native), no multimodal library: only what the GGUF jobs and server use.
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PY) -m pip install -q -e '.[dev,quantize,evaluate,serve-cpu]'
	$(PY) -m pip install -q --ignore-requires-python helm-sdkpy==0.1.32
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/qmodel demo $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests benchmarks docs charts scripts
	$(VENV)/bin/mypy

test: $(STAMP)
	$(MAKE) lint
	$(PY) -m pytest -q

crd: $(STAMP)
	$(VENV)/bin/qmodel crd > crds/qmodel.io_quantizedmodels.yaml
	$(PY) charts/sync_crds.py
	$(PY) docs/gen_reference.py
