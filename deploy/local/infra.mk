# Local Kafka + FerretDB without Docker (see deploy/local/README.md).
# Included by the top-level Makefile, which runs from the repo root.
# INFRA_SERVER=kafka|ferretdb limits a target to one server, e.g. `make infra-down INFRA_SERVER=kafka`.
INFRA_SH := $(CURDIR)/deploy/local/infra.sh
INFRA_SERVER ?=

.PHONY: infra-up infra-down infra-status infra-logs infra-clean

infra-up:
	@bash "$(INFRA_SH)" up $(INFRA_SERVER)

infra-down:
	@bash "$(INFRA_SH)" down $(INFRA_SERVER)

infra-status:
	@bash "$(INFRA_SH)" status $(INFRA_SERVER)

infra-logs:
	@bash "$(INFRA_SH)" logs $(INFRA_SERVER)

# Stops the servers and deletes their data; the download/build cache is kept.
infra-clean:
	@bash "$(INFRA_SH)" clean $(INFRA_SERVER)
