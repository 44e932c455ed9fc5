# RDMT-Dagster: `make demo` sets up .venv and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test validate bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/rdmt demo --workdir rdmt-demo

validate: setup
	$(VENV)/bin/dagster definitions validate -m rdmt_dagster.definitions

test: setup
	$(PY) -m pytest -n 2 --durations=15

bench: setup
	$(PY) benchmarks/run.py
