# The README's two commands: `make run` (the whole system on the local stack) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 3000
STATE  ?= .local-state
# The SAM CLI pins many libraries: it lives in its own virtualenv, installed on demand.
SAM_VENV := .venv-sam
SAM      := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
REGION ?= us-east-1
# Node tools that check the artefacts (asl-validator), pinned in package-lock.json.
NODE_STAMP := node_modules/.installed
# The Lambdas' architecture: the template's LambdaArchitecture default unless ARCH=x86_64|arm64.
# SAM passes no architecture to makefile builds, so functions/Makefile reads LAMBDA_ARCHITECTURE.
ARCH ?= $(shell $(PY) functions/lambda_constraints.py --default-architecture)

.PHONY: help run test lint unit integration e2e bench build validate clean install
.DEFAULT_GOAL := help

# `make help` lists the targets that carry a `## what it does` comment.
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP) ## create .venv with the pinned dependencies, and node_modules

run: $(STAMP) ## the whole system on the local stack (ARGS=--simulate, PORT=, STATE=)
	$(PY) -m local up --port $(PORT) --state-dir $(STATE) $(ARGS)

# ruff, then the artefacts checked by tools that are not ours: cfn-lint (no rule silenced),
# asl-validator on the deployed state machine definition, parliament on every IAM policy.
lint: $(STAMP) $(NODE_STAMP) ## ruff, ruff format, cfn-lint, asl-validator, parliament
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/cfn-lint template.yaml
	$(PY) .ci/check_asl.py
	$(PY) .ci/check_iam.py

$(SAM):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV) || python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_VERSION)

# python3.13 artifacts for ARCH in .aws-sam/build (functions/Makefile; no python3.13 needed here).
# Deploy with the same LambdaArchitecture: sam deploy --parameter-overrides LambdaArchitecture=$(ARCH)
# --no-cached: the versions come from pyproject.toml and .venv, which SAM's build cache does not hash.
build: $(STAMP) $(SAM) ## python3.13 Lambda artifacts for ARCH in .aws-sam/build, checked
	SAM_CLI_TELEMETRY=0 LAMBDA_ARCHITECTURE=$(ARCH) $(SAM) build --region $(REGION) --no-cached \
	  --parameter-overrides LambdaArchitecture=$(ARCH)
	$(PY) .ci/check_build.py .aws-sam/build

# cfn-lint, SAM's own validation with its linter, then `make build` and its artifact check
# (versions the tests run on, cp313 wheels for ARCH, Lambda's size limit).
validate: $(STAMP) $(SAM) ## cfn-lint, sam validate --lint, then make build
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region $(REGION)
	$(MAKE) build

# --iam-coverage: every statement of template.yaml's IAM policies must allow some call (tests/iam_coverage.py)
test: lint ## lint, then every test (unit, integration, e2e) with IAM coverage
	$(PY) -m pytest -q --iam-coverage

unit: $(STAMP) ## the unit tests (no servers)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP) ## the integration tests (moto, the local Personalize engine, the real handlers)
	$(PY) -m pytest -q tests/integration

e2e: $(STAMP) ## the end-to-end tests (each module starts the local stack on free ports)
	$(PY) -m pytest -q tests/e2e

bench: $(STAMP) ## the benchmarks (print their figures)
	$(PY) -m bench

clean: ## remove the local state, build output and caches
	rm -rf $(STATE) .aws-sam .pytest_cache .ruff_cache node_modules
