# Set-up, demo and tests. Each target creates .venv (torch pinned to the 2.13.0 CPU build) on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup browser demo test bench screenshots clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,text,report,browser,lab]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m ganforge demo --out runs/demo

# headless Chromium for the browser tests (Debian's package; Playwright drives it, its own browser download is unused)
browser:
	@[ -n "$$GANFORGE_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "make browser: no apt-get; install Chromium and put it on PATH" \
	    "(or set GANFORGE_CHROMIUM=/path/to/chrome)"; exit 1; }; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test: setup browser
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/bench_modes.py
	$(PY) benchmarks/bench_throughput.py
	$(PY) benchmarks/bench_fid.py

screenshots: setup browser
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) runs .pytest_cache
