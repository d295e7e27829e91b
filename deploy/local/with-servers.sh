#!/usr/bin/env bash
# Runs a command with Kafka and FerretDB up, then stops whichever of them this script started,
# so `make test` leaves a machine as it found it (servers someone else started keep running).
set -euo pipefail

infra="$(dirname "${BASH_SOURCE[0]}")/infra.sh"
started=()
for server in kafka ferretdb; do
  if ! bash "$infra" status "$server" | grep -qE 'running|external'; then
    started+=("$server")
  fi
done

stop_started() {
  for server in "${started[@]}"; do bash "$infra" down "$server" || true; done
}
trap stop_started EXIT
bash "$infra" up
"$@"
