# Two entry points for a fresh machine (see README.md):
#   make demo   set everything up, install the default model, run the main job
#               (a scripted editor session against the daemon; `make bench` runs the engine benchmark,
#               `make bench-compare` the comparison with llama-server and llama-cpp-python)
#   make test   set everything up and run the test suites (Python, then the editor clients;
#               Emacs, tmux and Chromium come from Debian's packages if missing, npm packages from the registry)
# Everything lands in .venv/ and .build/ inside the checkout.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip --disable-pip-version-check
LLAMA_CPP   := 0.3.36
# ggml's AMX kernels crash on some CPUs for quantized models; build without them.
NO_AMX      := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE := -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)' -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
WHEELS      := .build/wheels/llama-cpp-python-$(LLAMA_CPP)-noamx
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup model demo bench bench-compare llama-server test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel

# Built once per checkout into a folder named for its flags, so pip's own cache can never
# hand back a wheel built with AMX enabled.
$(WHEELS)/.built: | $(VENV)/bin/activate
	@echo "Building llama-cpp-python $(LLAMA_CPP) without AMX kernels (takes ~5 minutes on 2 cores)..."
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) \
	  $(PIP) wheel --quiet --no-deps --no-cache-dir -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP)
	touch $@

$(VENV)/.installed: $(WHEELS)/.built pyproject.toml
	$(PIP) install --quiet --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-$(LLAMA_CPP)-*.whl
	$(PIP) install --quiet --find-links $(WHEELS) -e '.[test]'
	touch $@

setup: $(VENV)/.installed

model: setup
	$(PIP) install --quiet --find-links $(WHEELS) -e '.[test,model,bench]'
	$(VENV)/bin/coderag-daemon model install
	$(VENV)/bin/coderag-daemon model install gemma3-270m

demo: model
	$(VENV)/bin/coderag-daemon demo

bench: model
	$(VENV)/bin/coderag-daemon bench engine

# Side by side with llama-server (built once into .build/) and llama-cpp-python; see docs/BENCHMARKS.md.
bench-compare: model
	$(VENV)/bin/coderag-daemon bench compare --plots docs/img --json .build/compare.json

# llama-server from llama-cpp-python's own llama.cpp, AMX disabled (once, ~10 minutes on 2 cores): the remote
# engine's tests run the daemon against it, and `bench compare` uses it.
LLAMA_SERVER := .build/llama-server-$(LLAMA_CPP)-noamx/bin/llama-server
$(LLAMA_SERVER): | $(VENV)/.installed
	$(PY) -c 'from coderag_daemon.bench.llama_server import ServerBuild; ServerBuild().ensure()'

llama-server: $(LLAMA_SERVER)

# Lint and types first (seconds), then the suites.
test: setup $(LLAMA_SERVER)
	$(PY) -m ruff check coderag_daemon tests fixtures
	$(PY) -m ruff format --check coderag_daemon tests fixtures
	$(PY) -m mypy
	$(PY) -m pytest -q
	CODERAG_PYTHON=$(abspath $(PY)) editors/emacs/test.sh
	CODERAG_PYTHON=$(abspath $(PY)) editors/vscode/test.sh

clean:
	rm -rf $(VENV) .build
