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

# Every gate of `make test`, in the order it runs them (see docs/checks.md).
GATES := pytest units sanity lint docs changelog package ee molecule runner

.PHONY: help venv deps test tools pytest unit integration units sanity lint docs \
	changelog package ee molecule runner demo bench build clean

help:
	@echo "make deps         install Debian packages, .venv and the collection link"
	@echo "make test         every gate below, each even when one fails, with a summary"
	@echo "make pytest       unit + integration tests with the coverage gate"
	@echo "make unit         unit tests only (no coverage gate)"
	@echo "make integration  integration tests only (no coverage gate)"
	@echo "make units        ansible-test units (its own venv, on a copy)"
	@echo "make sanity       ansible-test sanity: all tests on 3.11, compile+import on 3.8-3.13"
	@echo "make lint         ansible-lint (production profile) and yamllint"
	@echo "make docs         antsibull-docs lint and the docs site in .build/docs-site/html"
	@echo "make changelog    antsibull-changelog lint and a release preview"
	@echo "make package      build, install into a fresh path, run the demo from there"
	@echo "make ee           ansible-builder create on execution-environment.yml"
	@echo "make molecule     Molecule scenarios of the roles against local nginx"
	@echo "make runner       the rollout playbook under ansible-runner, 3 local hosts"
	@echo "make tools        the check tools' environment, .build/venv-tools"
	@echo "make demo         deploy a certificate to a throw-away nginx and prove it"
	@echo "make bench N=50   benchmark against the everyday playbook (docs/performance.md)"
	@echo "make build        build the collection artifact into .build/dist"
	@echo "make clean        remove .venv, .build and test outputs"

venv deps:
	bash scripts/bootstrap.sh

# Every gate always runs, so one report does not hide another; the summary
# at the end gives each gate's result and time.
test: deps tools
	bash scripts/gates.sh $(GATES)

tools: deps
	bash -c 'source scripts/toolenv.sh && tools_venv'

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

units: deps
	bash scripts/units.sh

sanity: deps
	bash scripts/sanity.sh

lint: deps
	bash scripts/lint.sh

docs: deps
	bash scripts/docs.sh

changelog: deps
	bash scripts/changelog.sh

package: deps
	bash scripts/package.sh

ee: deps
	bash scripts/ee.sh

molecule: deps
	bash scripts/molecule.sh

runner: deps
	bash scripts/runner.sh

demo: deps
	bash scripts/demo.sh

# N nginx on 127.0.0.x; writes .build/bench/bench.json and bench.md.
N ?= 50
BENCH_ARGS ?=
bench: deps
	"$(PYTHON)" bench/run.py --hosts $(N) $(BENCH_ARGS)

# One artifact at a time: execution-environment.yml copies whichever is there.
build: deps
	mkdir -p .build/dist
	rm -f .build/dist/certfleet-deploy-*.tar.gz
	"$(VENV)/bin/ansible-galaxy" collection build --force --output-path .build/dist .

clean:
	rm -rf .venv .build .pytest_cache htmlcov tests/output .coverage .coverage.*
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
