# Tsunagu — every target creates what it needs (.tools/uv, .venv) on a fresh machine.
SHELL := /bin/bash
UV_VERSION := 0.13.9
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PYPROJECTS := pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)

.PHONY: run test lint typecheck unit postgres kafka schemas bench token clean help

help:
	@echo "make run    — broker + the four services on SQLite (./var); Ctrl-C stops"
	@echo "make test   — lint, type checks, contracts and every test (SQLite and PostgreSQL)"
	@echo "make bench  — benchmarks (docs/benchmarks.md)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock $(PYPROJECTS)
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

venv: $(VENV)/.synced

run: $(VENV)/.synced
	$(BIN)/tsunagu-dev run

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/tsunagu-schemas check

typecheck: $(VENV)/.synced
	$(BIN)/mypy -p tsunagu_events -p tsunagu_platform -p tsunagu_intake -p tsunagu_referral -p tsunagu_resources -p tsunagu_reporting

unit: $(VENV)/.synced
	$(BIN)/python -m pytest libs services tests -n 3 --dist loadfile --durations=15

# The PostgreSQL variants' server: installed from Debian's packages, started and given its test
# database by .ci/postgres (needs root); an explicit TSUNAGU_TEST_POSTGRES_URL is used as it is.
postgres:
	@if [ -n "$${TSUNAGU_TEST_POSTGRES_URL:-}" ]; then echo "PostgreSQL: the server of TSUNAGU_TEST_POSTGRES_URL"; \
	elif [ "$$(id -u)" = 0 ]; then .ci/postgres >/dev/null; \
	else echo "PostgreSQL: not root, so .ci/postgres cannot install it; its tests skip saying why"; fi

# Apache Kafka for the integration suite's `apache_kafka` variants: the broker's jars from Maven Central
# (deploy/kafka-dist) into $(KAFKA_HOME), once; again only when the pom changes. Without Java or Maven
# those tests skip saying why, unless TSUNAGU_REQUIRE_KAFKA=1 (CI), which makes this a failure.
KAFKA_VERSION := 4.1.0
KAFKA_HOME := $(TOOLS)/kafka-$(KAFKA_VERSION)

$(KAFKA_HOME)/.resolved: deploy/kafka-dist/pom.xml | $(VENV)/.synced
	@rm -f $@
	@$(BIN)/python -m tsunagu_platform.apache_kafka resolve || [ "$${TSUNAGU_REQUIRE_KAFKA:-}" != 1 ]

kafka: $(KAFKA_HOME)/.resolved

test: postgres kafka lint typecheck unit

schemas: $(VENV)/.synced
	$(BIN)/tsunagu-schemas export

bench: $(VENV)/.synced
	$(BIN)/python -m bench.run

ROLE ?= admin
AGENCY ?= setagaya.branch_office
token: $(VENV)/.synced
	@$(BIN)/tsunagu-token --role $(ROLE) --agency $(AGENCY)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
