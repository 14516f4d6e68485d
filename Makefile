# Stable entry points: make demo, make test (and later make bench, make chaos).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean test-deps bench bench-quick

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tillstream needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

## make demo [DURATION=seconds]: start a local Kafka broker and run the live demo
demo: venv
	$(BIN)/tillstream demo $(if $(DURATION),--duration $(DURATION))

## make lint: ruff, mypy and the schema compatibility check
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/tillstream schemas check

## make test-deps: the Debian packages whose servers the tests start (PostgreSQL, Prometheus)
TEST_PACKAGES = $(if $(POSTGRES_URL)$(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
                $(if $(shell command -v promtool 2>/dev/null),,prometheus)
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
test: lint test-deps
	$(BIN)/pytest

## make bench: every stage against its reference (local broker, scratch PostgreSQL), full rounds
bench: venv test-deps
	$(BIN)/python -m bench

## make bench-quick: the same stages, fewer rounds and events (about a minute)
bench-quick: venv test-deps
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
