# Workbench: `make demo` serves the live monitor; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=
# uv may be installed into ~/.local/bin, which a fresh shell does not have on PATH:
# every recipe (and the tests that call uv) finds it there all the same
export PATH := $(dir $(UV)):$(PATH)

.PHONY: env browser services demo test test-quick test-long soak lint bench clean

$(UV):
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv

env: $(UV)
	$(UV) sync --locked
	@$(UV) run python -c "from workbench import native; print('NDJSON decoder:', native.status())"

# Debian's chromium drives the UI tests (Playwright uses it; it never downloads a browser)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the UI tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# PostgreSQL, Redis, Mosquitto, NATS and the node exporter on loopback (started when down)
services:
	bash .ci/services

demo: env
	$(UV) run workbench serve --port 5006

test: env browser services
	$(UV) run ruff check .
	$(UV) run lint-imports
	$(UV) run mypy workbench
	$(UV) run pytest -m "not long" $(PYTEST_ARGS)

# the tests of over about three minutes each (every SIGKILL point on a cluster, all NAB files)
test-long: env browser services
	$(UV) run pytest -m long $(PYTEST_ARGS)

# 30 minutes of browser sessions coming and going on a served app: RSS back within 50 MB
# of its warm baseline (the default run does the same with 41 sessions)
soak: env browser services
	WORKBENCH_SOAK_MINUTES=$${WORKBENCH_SOAK_MINUTES:-30} $(UV) run pytest -s tests/test_sessions.py $(PYTEST_ARGS)

test-quick: env
	$(UV) run pytest -m "not slow" -x $(PYTEST_ARGS)

lint: env
	$(UV) run ruff check .
	$(UV) run lint-imports
	$(UV) run mypy workbench

bench: env
	$(UV) run workbench bench engine --events 2000000

clean:
	rm -rf .venv data/lake data/checkpoints tests/artifacts
