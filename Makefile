# Two commands a fresh machine needs (see README.md):
#   make train        set up .venv and train the CNN (the main job)
#   make test         set up .venv and run the whole test suite
#   make test-quick   the same without the cases marked slow
# Each creates its own virtual environment when there is none.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch comes first, pinned, so that the test extra's `torch>=2.0` is already met. The pin alone does not choose
# the build: from the public package index, torch 2.13.0 for Linux is the CUDA build (about 2.6 GB with the NVIDIA
# libraries it pulls in). So where no NVIDIA GPU is found (no nvidia-smi, or nvidia-smi lists no GPU) torch comes
# from PyTorch's CPU index (a 190 MB wheel), and from the public index where one is. TORCH_INDEX chooses for you:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu    # the CPU build
#   make test TORCH_INDEX=                                        # the public index: the CUDA build
TORCH_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
NVIDIA_SMI ?= nvidia-smi
ifeq ($(origin TORCH_INDEX),undefined)
  GPU_FOUND := $(shell if ! command -v $(NVIDIA_SMI) >/dev/null 2>&1; then echo no-nvidia-smi; \
                 elif $(NVIDIA_SMI) -L 2>/dev/null | grep -q '^GPU '; then echo yes; else echo no-gpu; fi)
  ifeq ($(GPU_FOUND),yes)
    TORCH_INDEX :=
    TORCH_BUILD := the CUDA build from the public index (about 2.6 GB), as nvidia-smi lists an NVIDIA GPU
  else
    TORCH_INDEX := $(TORCH_CPU_INDEX)
    TORCH_BUILD := the CPU build from $(TORCH_CPU_INDEX) (190 MB), as \
      $(if $(filter no-nvidia-smi,$(GPU_FOUND)),there is no nvidia-smi here,nvidia-smi lists no GPU)
  endif
else
  TORCH_BUILD := from $(or $(TORCH_INDEX),the public index), as TORCH_INDEX says
endif
# The two lines that install torch, for `make test` and `make notebook` alike.
SAY_TORCH = echo "Installing $(TORCH_SPEC): $(strip $(TORCH_BUILD))"
PIP_TORCH = $(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
EXTRAS ?= test,plot,standin
TRAIN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test test-quick notebook notebook-run setup setup-train data clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras, so `make test EXTRAS=test,plot,gpu` installs what it adds. The default test
# extras include `standin` (cupy importable, no CUDA libraries) so the GPU-path tests run without a GPU.
$(VENV)/.installed-%: setup.cfg pyproject.toml | $(VENV)/bin/python
	@$(SAY_TORCH)
	$(PIP_TORCH)
	$(PY) -m pip install --quiet -e ".[$*]"
	touch $@

# What the next steps after `make train` need besides training: Pillow for predict.py, matplotlib for plot.py (the
# plot extra, a few tens of MB). Not torch: evaluate.py --impl torch says how to install its CPU build.
$(VENV)/.installed-train: setup.cfg pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[plot]"
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

setup-train: $(VENV)/.installed-train data

# The main job falls back to Fashion-MNIST when MNIST is absent and cannot be downloaded;
# as root on Debian, install that dataset so the fallback works offline.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist (offline fallback dataset)"; \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
		echo "Could not install dataset-fashion-mnist; continuing."; \
	fi

train: setup-train
	$(PY) scripts/train.py $(TRAIN_ARGS)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The suite without the cases marked slow (the ones that train models or time things).
test-quick: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The course notebook (notebooks/course.ipynb) in Jupyter, in the browser: installs torch (from TORCH_INDEX, as
# `make test` does) and Jupyter (from the package index) into .venv first. Jupyter refuses root without
# --allow-root, so root gets it. `make notebook-run` runs every cell without a browser, into runs/course.ipynb.
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

$(VENV)/.installed-notebook: $(VENV)/.installed-train
	@$(SAY_TORCH)
	$(PIP_TORCH)
	$(PY) -m pip install --quiet notebook
	touch $@

notebook: setup-train $(VENV)/.installed-notebook
	$(PY) -m jupyter notebook $(JUPYTER_ROOT) notebooks/course.ipynb

notebook-run: setup-train $(VENV)/.installed-notebook
	mkdir -p runs
	$(PY) -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1200 \
		--output-dir runs notebooks/course.ipynb
	@echo "runs/course.ipynb: the course notebook with every cell's output"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
