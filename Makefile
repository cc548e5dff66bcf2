# The README's two commands are `make demo` (the main job) and `make test`; both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP := CECO3D_VENV=$(VENV) bash scripts/setup.sh

.PHONY: setup setup-cuda gpu-bundle test test-fast demo demo-quick calibrate benchmark seeds bench lint format clean

setup:
	@$(SETUP)

# MinkowskiEngine with CUDA, no GPU needed to build it (README, "GPU machines"); not part of CI.
setup-cuda:
	@CECO3D_ME_CUDA=1 $(SETUP)

# What scripts/gpu_check.sh needs on a GPU machine without network, into gpu_bundle/.
gpu-bundle:
	bash scripts/gpu_bundle.sh

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# The demo, the calibration and the benchmark rewrite their tables in README.md and their
# figures in docs/figures/ (README, "The long-tail benchmark").
demo: setup
	$(VENV)/bin/ceco3d-demo --readme README.md

calibrate: setup
	$(VENV)/bin/ceco3d-demo --preset fine_grained --calibrate --readme README.md

benchmark: setup
	$(VENV)/bin/ceco3d-demo --preset fine_grained --benchmark --seeds 0 1 2 --readme README.md

demo-quick: setup
	$(VENV)/bin/ceco3d-demo --quick

seeds: setup
	bash scripts/ce_vs_ceco_seeds.sh

bench: setup
	$(VENV)/bin/ceco3d-bench

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf runs demo_out demo_quick_out benchmark_out bench_out .pytest_cache
