# The two set-up commands (README): `make demo` and `make test`. Each creates or reuses .venv and installs
# what it needs, so both work on a fresh machine with nothing but Python >= 3.10, pip and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo serve test test-fast lint typecheck pytest docs clean other-pythons npm-tools

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

# The quick loop while editing: lint, types and the tests not marked `slow` (no demo server, no real py-spy
# sampling for seconds); under 90 s. `make test` runs everything.
test-fast: lint typecheck
	$(BIN)/pytest -m "not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) other-pythons npm-tools
	$(BIN)/pytest

# MCP peers the probe tests run against, from npm, into .npm-tools/ (ignored): node >= 22 (the npm package
# `node`, for machines whose node is older), the official conformance suite and the TypeScript reference server.
# Made once; where npm is unreachable this says so and the tests that need them skip, naming what is missing.
NPM_PACKAGES ?= node@22 @modelcontextprotocol/conformance@0.1.16 @modelcontextprotocol/server-everything@2026.8.31
npm-tools: .npm-tools/.installed
.npm-tools/.installed: Makefile
	@mkdir -p .npm-tools
	@[ -f .npm-tools/package.json ] || echo '{"private": true}' > .npm-tools/package.json
	@if command -v npm >/dev/null 2>&1 && (cd .npm-tools && npm install --no-audit --no-fund --loglevel=error $(NPM_PACKAGES)); \
	then touch $@; else echo "npm install failed (npm unreachable?): the conformance and TypeScript-peer tests will skip"; fi

# diagnose is tested on more than one Python (py-spy sees a spinning loop differently on 3.12+): a small venv
# with just anyio per extra interpreter found (on PATH, else pyenv's), made once; tests skip, naming it, if absent.
EXTRA_PYTHONS ?= 3.12 3.13
other-pythons:
	@for v in $(EXTRA_PYTHONS); do \
	  d=.venv-py$$v; [ -f $$d/.installed ] && continue; exe=""; \
	  for c in python$$v $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v*/bin/python$$v 2>/dev/null | sort -V | tail -1); do \
	    if $$c -c 'import sys' >/dev/null 2>&1; then exe=$$c; break; fi; \
	  done; \
	  if [ -z "$$exe" ]; then echo "python$$v not found: diagnose's tests on $$v will skip"; continue; fi; \
	  $$exe -m venv $$d && $$d/bin/python -m pip install --quiet anyio && touch $$d/.installed; \
	done

docs: $(STAMP)
	$(BIN)/python -m watchdog.config > docs/config.md
	$(BIN)/python -m watchdog.signals > docs/signals.md
	$(BIN)/python -m watchdog.probes > docs/probes.md

clean:
	rm -rf $(VENV) .venv-py3.* .npm-tools .mypy_cache .ruff_cache .pytest_cache *.egg-info
