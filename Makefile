# workbench — set-up, lab, tests, dashboard and benchmarks from a clean clone.
#   make lab    create .venv, install everything, register the kernel, launch JupyterLab on notebooks/
#   make test   same set-up, then the whole test suite (unit, notebooks via papermill, browser)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned here, not in pyproject: torch==2.13.0 takes the CPU wheel that lies on this kind of machine.
# Override for a GPU box, e.g. `make lab TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
KERNEL ?= workbench
HOST ?= 127.0.0.1
LAB_PORT ?= 8888
PORT ?= 5006
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

export HF_HUB_DISABLE_PROGRESS_BARS=1
export TOKENIZERS_PARALLELISM=false
export PYDEVD_DISABLE_FILE_VALIDATION=1

.PHONY: setup lab test test-unit test-notebooks test-browser serve bench browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[ui,test]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (workbench)" >/dev/null
	$(VENV)/bin/jupyter labextension disable "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1 || true
	@touch $(STAMP)

lab: setup
	@echo "JupyterLab on http://$(HOST):$(LAB_PORT)/lab (token printed below); open notebooks/00_tour.ipynb"
	cd notebooks && ../$(VENV)/bin/jupyter lab --no-browser --ip=$(HOST) --port=$(LAB_PORT) --allow-root \
		--ServerApp.root_dir=. $(LAB_ARGS)

# Debian's chromium for the browser tests (playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium: browser tests will skip (or fail under CI=true)"; \
		else echo "chromium missing and not root: browser tests will skip (or fail under CI=true)"; fi; }

# Tiers (markers given by tests/conftest.py): unit (+ every docstring example), view, browser, notebook; slow.
test: setup browser
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests workbench widgets

test-unit: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "unit and not slow" tests/unit workbench widgets $(PYTEST_ARGS)

test-notebooks: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/notebooks $(PYTEST_ARGS)

test-browser: setup browser
	$(PY) -m pytest -q -p no:cacheprovider tests/ui $(PYTEST_ARGS)

serve: setup
	$(VENV)/bin/workbench serve --address $(HOST) --port $(PORT)

bench: setup
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
