# Two commands a fresh machine needs (see README.md):
#   make train   set up .venv and train the CNN (the main job)
#   make test    set up .venv and run the test suite
# Each creates its own virtual environment when there is none.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch comes first, pinned, so that the test extra's `torch>=2.0` is already met. The pin alone does not
# choose the CPU build: from the public package index, torch 2.13.0 for Linux is the CUDA build (several GB).
# On a machine without an NVIDIA GPU, take PyTorch's CPU build from its own index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= test,plot,standin
TRAIN_ARGS ?=

.PHONY: train test setup setup-train data clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras, so `make test EXTRAS=test,plot,gpu` installs what it adds. The default test
# extras include `standin` (cupy importable, no CUDA libraries) so the GPU-path tests run without a GPU.
$(VENV)/.installed-%: setup.cfg pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
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
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
