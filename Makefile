# The two set-up commands (README): `make demo` and `make test`. Each creates or reuses .venv and installs
# what it needs, so both work on a fresh machine with nothing but Python >= 3.10, pip and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo serve test lint typecheck pytest docs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "mcp-watchdog needs Python >= 3.10; set PYTHON=python3.x")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# The show: demo server + watchdog with the default rules, a real spin injected, detection and recycle.
# ARGS=--keep keeps it running; ARGS="--fault leak" shows another fault.
demo: $(STAMP)
	$(BIN)/python -m examples.demo.show $(ARGS)

# Only the demo server, for injecting faults by hand (python -m examples.demo inject ...).
serve: $(STAMP)
	$(BIN)/python -m examples.demo serve

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/python -m watchdog.config > docs/config.md
	$(BIN)/python -m watchdog.signals > docs/signals.md
	$(BIN)/python -m watchdog.probes > docs/probes.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
