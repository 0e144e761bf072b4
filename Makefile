# fluxfleet: two commands on a fresh machine — `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed

.PHONY: setup demo test test-fast lint typecheck bench clean

setup: $(STAMP_PY) $(STAMP_NPM)

$(STAMP_PY): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The main job: the lab's simulated fleet, the app in the local Functions host, a scripted scenario.
demo: setup
	$(PY) -m demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(VENV)/bin/pytest

# Unit and handler tests only: no lab, no Azurite (seconds).
test-fast: setup
	$(VENV)/bin/pytest tests/unit tests/functions

bench: setup
	$(PY) bench/cold_start.py
	$(PY) bench/lab_capacity.py
	$(PY) bench/fleet_fanout.py
	$(PY) bench/credential_rollout.py
	$(PY) bench/onboarding.py
	$(PY) bench/image_verdict.py
	$(PY) bench/fleet_health.py

clean:
	rm -rf $(VENV) node_modules .lab .demo
