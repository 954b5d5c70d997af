# Two commands do everything on a fresh Debian machine (Python 3.11, root, no GPU):
#   make demo   set up, then run the most complete pipeline that exists
#   make test   set up, then run the tests
# Set-up is idempotent: a second run only checks stamps.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PIP      := $(VENV)/bin/pip
STAMP    := $(VENV)/.installed
DEMO_DIR ?= runs/demo
# Debian packages the project needs (checked with dpkg, installed only when missing).
APT_PACKAGES := sox libsndfile1

.PHONY: all setup apt demo test lint runner clean

all: test

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU wheel on disk, never the CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# Resemblyzer without its deps: its `webrtcvad` pin is replaced by webrtcvad-wheels.
	$(PIP) install -q --no-deps resemblyzer==0.1.4
	touch $(STAMP)

setup: $(STAMP)

# The demo: corpus -> train the lhq-svc-demo teacher (~15 min on 2 cores; DEMO_STEPS=N for a
# quicker, worse model) -> convert a held-out song to another singer -> export the demo decoder
# to an int8 .pte (parity-gated) -> benchmark it with the native runner. Re-running resumes.
DEMO_STEPS ?=
demo: setup runner
	$(VENV)/bin/compress models
	test -f $(DEMO_DIR)/corpus/meta.json || \
	  $(VENV)/bin/compress data synth --out $(DEMO_DIR)/corpus --singers 4 --minutes 2 --seed 0
	@echo "corpus: $(abspath $(DEMO_DIR))/corpus"
	if [ -f $(DEMO_DIR)/teacher/model.safetensors ]; then RESUME=--resume; else RESUME=; fi; \
	$(VENV)/bin/compress train --model lhq-svc-demo --data $(DEMO_DIR)/corpus \
	  --out $(DEMO_DIR)/teacher $$RESUME $(if $(DEMO_STEPS),--steps $(DEMO_STEPS),)
	$(VENV)/bin/compress convert --checkpoint $(DEMO_DIR)/teacher \
	  --input $(DEMO_DIR)/corpus/dataset_raw/singer00/song002.wav --speaker singer02 \
	  --output $(DEMO_DIR)/singer00_to_singer02.wav --steps 50
	@echo "export: the demo decoder preset as built (untrained: its zero-initialised output layer"
	@echo "makes parity trivial) -- this measures the architecture's int8 latency; exporting the"
	@echo "trained pipeline to int8 is still open (see README)"
	$(VENV)/bin/compress export lhq-svc-decoder-demo --format pte --precision int8 \
	  --out $(DEMO_DIR)/export
	$(VENV)/bin/compress bench $(DEMO_DIR)/export/lhq-svc-decoder-demo_xnnpack_int8.pte --host \
	  --threads 1 --iterations 30 --repeats 3 --json $(DEMO_DIR)/bench_host.json
	@echo "demo outputs in $(abspath $(DEMO_DIR))"

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The native benchmark runner (device_bench/runner) for this host, against the executorch
# wheel's CMake package, with the venv's cmake (>= 3.28). Bundle: build/runner/x86_64/.
# Idempotent: does nothing when the bundle is newer than its sources. The tests build it too.
runner: setup
	$(PY) -m device_bench.runner_build

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
