# rsis-lite: build, test and notebook tasks. GNU make on Linux/macOS; only python3 is required.
#
#   make reproduce   install, then train/evaluate every system and print the results table
#   make test        dev install, unit tests, then every notebook under nbval (quick profile)
#   make test-browser  every notebook's widgets moved in JupyterLab + headless Chromium (installs chromium)
#   make lab         JupyterLab in notebooks/
#   make sync        pair every notebook with its py:percent twin (jupytext --sync)
#   make execute     re-run every notebook in place (quick profile), then sync the twins
#   make bench       training throughput and step-time breakdown
#   make clean       remove caches and build leftovers (keeps .venv and results/)
#
# Use another environment with `make test VENV=/path/to/venv` (it is created if missing).

VENV ?= .venv
PY = $(VENV)/bin/python
PYTHON3 ?= python3

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# py:percent twins that have no .ipynb yet (a notebook first written as .py) are synced too.
NEW_TWINS := $(filter-out $(NOTEBOOKS:.ipynb=.py),$(sort $(wildcard notebooks/*.py)))
SANITIZE := tests/nbval_sanitize.cfg
NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-sanitize-with $(SANITIZE) --durations=10

.DEFAULT_GOAL := help
.PHONY: help install install-dev reproduce test test-unit test-notebooks test-browser lab sync execute bench clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# ---- environment ---------------------------------------------------------------------------
# The stamps depend on pyproject.toml, so editing the dependencies re-installs on the next run.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# ---- the two commands of the README --------------------------------------------------------
reproduce: $(VENV)/.installed
	$(PY) -m rsis_lite reproduce --overwrite

test: test-unit test-notebooks

test-unit: $(VENV)/.installed-dev
	$(PY) -m pytest tests --durations=15

# Lax mode: only cells marked `# NBVAL_CHECK_OUTPUT` are compared with their stored outputs;
# RSIS_GPU_SMOKE=1 runs each notebook's GPU section on the CPU with a tiny budget (the Colab code path);
# every other cell must still run without an error.
test-notebooks: $(VENV)/.installed-dev
ifeq ($(NOTEBOOKS),)
	@echo "nbval: no notebooks/*.ipynb yet -- skipping the notebook tests"
else
	RSIS_PROFILE=quick RSIS_GPU_SMOKE=1 $(PY) -m pytest $(NBVAL_FLAGS) notebooks/
endif

# Real-browser widget tests (tests/browser, marker `browser`, deselected from `pytest tests`):
# JupyterLab on 127.0.0.1 with copies of the notebooks, Debian's Chromium driven by Playwright.
# Screenshots and logs go to $RSIS_ARTIFACTS (default tests/browser/artifacts/).
test-browser: $(VENV)/.installed-dev
	bash tools/install_browser.sh
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 RSIS_PROFILE=quick $(PY) -m pytest -m browser -v tests/browser

# ---- notebooks -----------------------------------------------------------------------------
lab: $(VENV)/.installed-dev
	cd notebooks && $(abspath $(PY)) -m jupyter lab

# Pairs are synced through the .ipynb: jupytext guesses the format of a .py file from its text, and
# the indented `# !pip` line of the Colab install cell makes it guess "hydrogen" instead of
# "percent" (then `jupytext --sync NN.py` answers "not a paired notebook"). Twins without a notebook
# yet are converted with the format given explicitly.
ALL_NOTEBOOKS := $(sort $(NOTEBOOKS) $(NEW_TWINS:.py=.ipynb))

sync: $(VENV)/.installed-dev
ifeq ($(ALL_NOTEBOOKS),)
	@echo "sync: no notebooks yet"
else
ifneq ($(NEW_TWINS),)
	$(PY) -m jupytext --from py:percent --to ipynb $(NEW_TWINS)
endif
	$(PY) -m jupytext --sync $(ALL_NOTEBOOKS)
endif

# Sync first so edits made in the .py twins are what runs; sync again to refresh the twins.
execute: sync
ifneq ($(ALL_NOTEBOOKS),)
	RSIS_PROFILE=quick $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.kernel_name=python3 \
		$(ALL_NOTEBOOKS)
	$(PY) -m jupytext --sync $(ALL_NOTEBOOKS)
else
	@echo "execute: no notebooks yet"
endif

bench: $(VENV)/.installed
	$(PY) -m rsis_lite bench

# ---- housekeeping --------------------------------------------------------------------------
clean:
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 \
		| xargs -0 rm -rf
	rm -rf .pytest_cache build dist *.egg-info

distclean: clean
	rm -rf $(VENV)
