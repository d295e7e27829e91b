# dealflow: `make run` demonstrates the whole pipeline, `make test` proves it. `make help` lists the rest.
SHELL := bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
ASYNCAPI_TOOLS := tools/asyncapi
ASYNCAPI_VALIDATOR := $(ASYNCAPI_TOOLS)/node_modules/.installed
SERVICES := deploy/local/services.sh
export PATH := $(BIN):$(PATH)

include deploy/local/infra.mk

.PHONY: help install run up where stop scale status logs test check lint typecheck imports pytest unit integration e2e fault hostile bench schemas clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@command -v kcat >/dev/null || command -v kafkacat >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq kcat >/dev/null; \
	  else echo "note: install Debian's kcat to run the non-Python client test (apt-get install kcat)"; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install Debian's chromium to run the insights page tests (apt-get install chromium)"; fi; }
	touch $(INSTALLED)

# The official AsyncAPI parser (Node.js), pinned by its lock file, validates contracts/asyncapi.yaml.
# --ignore-scripts: no dependency needs an install script; one would only send telemetry.
$(ASYNCAPI_VALIDATOR): $(ASYNCAPI_TOOLS)/package.json $(ASYNCAPI_TOOLS)/package-lock.json
	@command -v npm >/dev/null || { echo "install Node.js 20.17+ with npm to validate the AsyncAPI document"; exit 1; }
	cd $(ASYNCAPI_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(ASYNCAPI_VALIDATOR)

install: $(INSTALLED) $(ASYNCAPI_VALIDATOR) ## create .venv and install dealflow with its tools

run: install infra-up ## start the servers and the five services, run the demo, leave it all running
	@bash $(SERVICES) start
	@$(BIN)/dealflow demo
	@$(MAKE) --no-print-directory where

up: install infra-up ## start the servers and the five services without the demo, for your own data
	@bash $(SERVICES) start
	@$(MAKE) --no-print-directory where

where:
	@echo
	@echo "Pipeline page (board, funnel, forecast, time in stage; it updates as events arrive). The link"
	@echo "carries the API token (.local/api-token unless DEALFLOW_API_TOKEN is set): it signs the browser in"
	@echo "with a cookie and drops the token from the address:"
	@echo "    $$(bash $(SERVICES) page-url)"
	@echo "In the terminal: dealflow report (it sends the same token)."
	@echo "The stack is still running: 'dealflow follow' watches events, 'dealflow journey <deal-id>' shows one deal,"
	@echo "logs are in .local/logs/. 'make stop' ends it all."

stop: ## stop the services and the local servers
	@bash $(SERVICES) stop
	@$(MAKE) --no-print-directory infra-down

scale: install ## run N replicas of one stage: make scale SERVICE=qualification N=3
	@bash $(SERVICES) scale $(SERVICE) $(N)

status: infra-status ## show what is running
	@bash $(SERVICES) status

logs: ## follow the services' logs until Ctrl-C (SERVICE=qualification for one)
	@bash $(SERVICES) logs $(SERVICE)

test: install ## lint, type-check and run every test against real servers it starts (and stops)
	@bash deploy/local/with-servers.sh $(MAKE) --no-print-directory check

check: lint typecheck imports pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

pytest:
	$(BIN)/pytest -ra

unit: install ## only the fast tests (no servers needed)
	$(BIN)/pytest -ra tests/unit tests/contract

integration: install ## only the integration tests (servers must be up: make infra-up)
	$(BIN)/pytest -ra tests/integration

e2e: install ## only the end-to-end test (servers must be up: make infra-up)
	$(BIN)/pytest -ra tests/e2e

fault: install ## only the fault suite (starts and stops the local servers it needs)
	@bash deploy/local/with-servers.sh $(BIN)/pytest -ra tests/fault

hostile: install ## only the hostile-input suite (HOSTILE_CLASSES=a,b for some classes; starts the servers)
	@bash deploy/local/with-servers.sh $(BIN)/pytest -ra tests/hostile

# BENCH_COUNT: the largest stage-alone size (N/20 and N/4 run too). BENCH_RATE: an offered rate for the
# end-to-end latency runs besides 20, 50 and 200 leads/s. Figures and targets: stdout and bench/results.json.
BENCH_COUNT ?= 20000
BENCH_RATE ?= 200
bench: install ## each stage and the pipeline against Kafka and database ceilings (BENCH_COUNT=, BENCH_RATE=)
	@bash deploy/local/with-servers.sh $(BIN)/dealflow bench --count $(BENCH_COUNT) --rate $(BENCH_RATE)

schemas: install ## regenerate contracts/schemas, contracts/asyncapi.yaml and playbooks/playbook.schema.json from the models
	$(BIN)/python -m contracts.export
	$(BIN)/python -m contracts.asyncapi
	$(BIN)/python -m cli.playbook
	$(BIN)/python -m contracts.reference
	node $(ASYNCAPI_TOOLS)/validate.mjs contracts/asyncapi.yaml >/dev/null

clean: stop ## stop everything and delete local data and the virtualenv (downloads stay cached)
	@$(MAKE) --no-print-directory infra-clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
