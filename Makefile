# Set-up, demo and tests. Each target creates .venv (torch pinned to the 2.13.0 CPU build) on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,text,report]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m ganforge demo --out runs/demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/bench_modes.py
	$(PY) benchmarks/bench_throughput.py
	$(PY) benchmarks/bench_fid.py

clean:
	rm -rf $(VENV) runs .pytest_cache
