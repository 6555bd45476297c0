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

.PHONY: run test lint unit integration e2e bench validate clean install

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m local up --port $(PORT) --state-dir $(STATE) $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/cfn-lint template.yaml

$(SAM):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV) || python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_VERSION)

# cfn-lint, SAM's own validation with its linter, a full `sam build` (into .aws-sam/), and a
# check that every pinned requirement made it into its artifact.
validate: $(STAMP) $(SAM)
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region $(REGION)
	SAM_CLI_TELEMETRY=0 $(SAM) build --region $(REGION)
	$(PY) .ci/check_build.py .aws-sam/build

test: lint
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(STATE) .aws-sam .pytest_cache .ruff_cache
