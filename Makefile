# Build, test and demo entry points. Run as root on Debian; `make deps`
# installs whatever is missing (see scripts/bootstrap.sh).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PYTHON := $(VENV)/bin/python
COLLECTIONS := $(ROOT)/.build/collections
COV_FAIL_UNDER ?= 90
PYTEST_ARGS ?=

# What tests and playbooks need to find the collection and the interpreter.
export PYTHONPATH := $(COLLECTIONS)$(if $(PYTHONPATH),:$(PYTHONPATH))
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_PYTHON_INTERPRETER := $(PYTHON)
export CERTFLEET_VENV_PYTHON := $(PYTHON)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: help venv deps test pytest unit integration sanity lint docs demo build clean

help:
	@echo "make deps         install Debian packages, .venv and the collection link"
	@echo "make test         unit + integration tests with coverage, sanity, lint"
	@echo "make unit         unit tests only (no coverage gate)"
	@echo "make integration  integration tests only (no coverage gate)"
	@echo "make sanity       ansible-test sanity on a copy of the collection"
	@echo "make lint         ansible-lint (own venv in .build/venv-lint)"
	@echo "make docs         check that every module's documentation parses"
	@echo "make demo         deploy a certificate to a throw-away nginx and prove it"
	@echo "make build        build the collection artifact into .build/dist"
	@echo "make clean        remove .venv, .build and test outputs"

venv deps:
	bash scripts/bootstrap.sh

# Both parts always run, so one report does not hide the other.
test: deps
	@rc=0; \
	$(MAKE) --no-print-directory pytest || rc=1; \
	$(MAKE) --no-print-directory sanity || rc=1; \
	$(MAKE) --no-print-directory lint || rc=1; \
	if [ "$$rc" -ne 0 ]; then echo "make test: FAILED (see the output above)"; fi; \
	exit $$rc

# Unit and integration tests in one run, so coverage adds up across both.
# Coverage follows the tests into child Python processes (`patch` in
# pyproject.toml) and into modules that ansible-playbook runs from AnsiballZ
# zips (ansible-core's coverage hook, scripts/coverage-ansiballz.ini).
# While tests/unit and tests/integration hold no test files at all there is
# nothing to run (and no coverage to gate); after that every failure counts,
# including pytest's exit 5 for "collected nothing".
ANSIBALLZ_COVERAGE := {"config": "$(ROOT)/scripts/coverage-ansiballz.ini", "output": "$(ROOT)/.coverage.ansiballz"}

pytest: deps
	@if [ -z "$$(find tests/unit tests/integration \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit 2>/dev/null)" ]; then \
	    echo "pytest: no test files under tests/unit or tests/integration yet; skipped"; \
	else \
	    rm -f .coverage .coverage.*; \
	    export _ANSIBLE_ANSIBALLZ_COVERAGE_CONFIG='$(ANSIBALLZ_COVERAGE)'; \
	    set -x; "$(PYTHON)" -m pytest \
	        --cov --cov-report=term-missing --cov-fail-under=$(COV_FAIL_UNDER) \
	        $(PYTEST_ARGS); \
	fi

unit: deps
	"$(PYTHON)" -m pytest tests/unit $(PYTEST_ARGS)

integration: deps
	"$(PYTHON)" -m pytest tests/integration $(PYTEST_ARGS)

sanity: deps
	bash scripts/sanity.sh

lint: deps
	bash scripts/lint.sh

# Quick check that every module's documentation (with its doc fragments)
# parses; the ansible-doc and validate-modules sanity tests go further.
docs: deps
	@rc=0; for module in plugins/modules/*.py; do \
	    name="$$(basename "$$module" .py)"; \
	    if ! err="$$(ansible-doc -t module "certfleet.deploy.$$name" 2>&1 >/dev/null)"; then \
	        rc=1; printf '%s:\n%s\n\n' "$$module" "$$err"; \
	    fi; \
	done; \
	if [ "$$rc" -eq 0 ]; then echo "docs: every module's documentation parses"; fi; \
	exit $$rc

demo: deps
	bash scripts/demo.sh

build: deps
	mkdir -p .build/dist
	"$(VENV)/bin/ansible-galaxy" collection build --force --output-path .build/dist .

clean:
	rm -rf .venv .build .pytest_cache htmlcov tests/output .coverage .coverage.*
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
