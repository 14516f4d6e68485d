# Stable entry points: make demo, make test (and later make bench, make chaos).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean test-deps bench bench-quick chaos chaos-short audit

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tillstream needs Python 3.11 or newer (set PYTHON=...)")'
	@echo "Setting up $(VENV): tillstream and its dependencies from PyPI, about 2 minutes the first time (pip shows each package) ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e ".[dev]"
	@echo "$(VENV) is ready."
	@touch $(STAMP)

venv: $(STAMP)

## make demo [DURATION=seconds]: start a local Kafka broker and run the live demo
demo: venv
	$(BIN)/tillstream demo $(if $(DURATION),--duration $(DURATION))

## make lint: ruff, mypy, the layers contract (import-linter) and the schema compatibility check
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/tillstream schemas check
	$(BIN)/tillstream schemas types --check

## make audit: known vulnerabilities in the installed dependencies (pip-audit, PyPI's advisories);
## tillstream itself is not on PyPI (editable), so it is skipped. AUDIT_STRICT=1: also fail when
## a package could not be checked (the advisory data unreachable).
audit: venv
	$(BIN)/pip-audit --skip-editable --progress-spinner off $(if $(filter 1,$(AUDIT_STRICT)),--strict)

## make test-deps: the Debian packages whose servers the tests start (PostgreSQL, Prometheus)
## and the headless browser the auditor's page is tested in (chromium and its driver)
TEST_PACKAGES = $(if $(POSTGRES_URL)$(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
                $(if $(shell command -v promtool 2>/dev/null),,prometheus) \
                $(if $(wildcard /usr/bin/chromium),,chromium) \
                $(if $(wildcard /usr/bin/chromedriver),,chromium-driver)
test-deps:
	@missing="$(strip $(TEST_PACKAGES))"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (Debian packages) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the tests need: sudo apt-get install $$missing (or POSTGRES_URL for PostgreSQL)"; \
	    exit 1; \
	  fi; \
	fi

## make test: lint, then the whole suite against a real Kafka broker and PostgreSQL
test: lint audit test-deps
	$(BIN)/pytest

## make bench: every stage against its reference (local broker, scratch PostgreSQL), full rounds
bench: venv test-deps
	$(BIN)/python -m bench

## make bench-quick: the same stages, fewer rounds and events (about a minute)
bench-quick: venv test-deps
	$(BIN)/python -m bench --quick

## make chaos [CHAOS_ARGS=...]: the full fault-injection run, 1,000,000 events (about 30 min)
chaos: venv test-deps
	$(BIN)/python -m chaos $(CHAOS_ARGS)

## make chaos-short: the same faults on 20,000 events (about 3 min; CI runs it in make test)
chaos-short: venv test-deps
	$(BIN)/python -m chaos --short $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
