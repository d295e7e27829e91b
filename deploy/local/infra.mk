# Local Kafka + FerretDB without Docker (see deploy/local/README.md).
# Included by the top-level Makefile, which runs from the repo root.
# INFRA_SERVER=kafka|ferretdb limits a target to one server, e.g. `make infra-down INFRA_SERVER=kafka`.
INFRA_SH := $(CURDIR)/deploy/local/infra.sh
INFRA_SERVER ?=

.PHONY: infra-up infra-down infra-status infra-logs infra-clean

infra-up: ## start the local Kafka and FerretDB (INFRA_SERVER=kafka|ferretdb for one)
	@bash "$(INFRA_SH)" up $(INFRA_SERVER)

infra-down: ## stop the local servers, keeping their data
	@bash "$(INFRA_SH)" down $(INFRA_SERVER)

infra-status: ## show whether the local servers run
	@bash "$(INFRA_SH)" status $(INFRA_SERVER)

infra-logs: ## show the local servers' recent log lines
	@bash "$(INFRA_SH)" logs $(INFRA_SERVER)

# Stops the servers and deletes their data; the download/build cache is kept.
infra-clean: ## stop the local servers and delete their data (the build cache is kept)
	@bash "$(INFRA_SH)" clean $(INFRA_SERVER)
