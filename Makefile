# Workbench: `make demo` serves the live monitor; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: env demo test test-quick lint bench clean

$(UV):
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv

env: $(UV)
	$(UV) sync --locked

demo: env
	$(UV) run workbench serve --port 5006

test: env
	$(UV) run ruff check .
	$(UV) run pytest $(PYTEST_ARGS)

test-quick: env
	$(UV) run pytest -m "not slow" -x $(PYTEST_ARGS)

lint: env
	$(UV) run ruff check .
	$(UV) run mypy workbench

bench: env
	$(UV) run workbench bench engine --events 2000000

clean:
	rm -rf .venv data/lake data/checkpoints tests/artifacts
