# Stable entry points: make demo, make test (and later make bench, make chaos).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean postgres prometheus

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

## make postgres: the PostgreSQL server package the tests start a throwaway server from
postgres:
	@if [ -z "$$POSTGRES_URL" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing PostgreSQL (Debian package postgresql) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "the tests need PostgreSQL's server: sudo apt-get install postgresql (or set POSTGRES_URL)"; \
	    exit 1; \
	  fi; \
	fi

## make prometheus: prometheus and promtool (Debian package prometheus) for the monitoring tests
prometheus:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Prometheus (Debian package prometheus) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  else \
	    echo "the tests need prometheus and promtool: sudo apt-get install prometheus"; \
	    exit 1; \
	  fi; \
	fi

## make test: lint, then the whole suite against a real Kafka broker and PostgreSQL
test: lint postgres prometheus
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
