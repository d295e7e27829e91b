#!/usr/bin/env bash
# Runs the stage services as background processes on this machine: one process per replica,
# pid and log files under .local/, so `make stop` can end exactly what `make run` started.
#
#   services.sh start [SERVICE...]      start one replica of each (default: all five)
#   services.sh scale SERVICE N         run exactly N replicas of SERVICE
#   services.sh stop [SERVICE...]       SIGTERM (graceful), then SIGKILL after a grace period
#   services.sh status
#   services.sh page-url                the insights page's address, with the API token to sign in
#   services.sh logs [SERVICE...]       follow the replicas' logs (default: all five), until Ctrl-C
#
# Each replica serves /healthz, /readyz and /metrics on its own port: the service's base port plus
# 100 per replica after the first (qualification: 8082, 8182, 8282, ...).
#
# The insights page and API demand an API token (README, Security). Unless DEALFLOW_API_TOKEN or
# DEALFLOW_API_TOKEN_FILE is set, the first start generates one into .local/api-token (readable by this
# user only), every later start reuses it, and the services read it through DEALFLOW_API_TOKEN_FILE.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="${DEALFLOW_STATE_DIR:-$repo/.local}"
run_dir="$state/run"
log_dir="$state/logs"
python="${PYTHON:-$repo/.venv/bin/python}"
declare -A base_port=([prospecting]=8081 [qualification]=8082 [proposal]=8083 [onboarding]=8084 [insights]=8085)
all_services=(prospecting qualification proposal onboarding insights)
mkdir -p "$run_dir" "$log_dir"

known() {
  local service
  for service in "${all_services[@]}"; do [[ "$service" == "$1" ]] && return 0; done
  echo "unknown service '$1': use one of ${all_services[*]}" >&2
  exit 2
}

http_port() { echo $((${base_port[$1]} + 100 * ($2 - 1))); }

token_file="$state/api-token"

use_api_token() {
  [[ -n "${DEALFLOW_API_TOKEN:-}" || -n "${DEALFLOW_API_TOKEN_FILE:-}" ]] && return
  if [[ ! -s "$token_file" ]]; then
    (umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$token_file")
    echo "generated the API token of the insights page and API: $token_file"
  fi
  export DEALFLOW_API_TOKEN_FILE="$token_file"
}

page_url() {
  local token
  if [[ -n "${DEALFLOW_API_TOKEN:-}" ]]; then
    token="$DEALFLOW_API_TOKEN"
  else
    token="$(tr -d '[:space:]' <"${DEALFLOW_API_TOKEN_FILE:-$token_file}")"
  fi
  # On stdin, not the command line, where other users could read it.
  printf '%s' "$token" | "$python" -c \
    'import sys, urllib.parse; print(f"http://127.0.0.1:'"${base_port[insights]}"'/?token={urllib.parse.quote(sys.stdin.read(), safe=str())}")'
}

pid_files() { ls "$run_dir/$1".*.pid 2>/dev/null || true; }
alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_replica() {
  local service="$1" replica="$2"
  local pid_file="$run_dir/$service.$replica.pid" log="$log_dir/$service.$replica.log"
  if alive "$pid_file"; then
    echo "$service[$replica] already running (pid $(cat "$pid_file"))"
    return
  fi
  local port
  port="$(http_port "$service" "$replica")"
  (cd "$repo" && DEALFLOW_HTTP_PORT="$port" exec setsid nohup "$python" -m "services.$service" \
    >>"$log" 2>&1 </dev/null) &
  echo $! >"$pid_file"
  echo "$service[$replica] started (pid $!, http://127.0.0.1:$port/readyz, log $log)"
}

stop_pid_file() {
  local pid_file="$1" pid
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $(basename "$pid_file" .pid) (pid $pid)"
  fi
  rm -f "$pid_file"
}

running_count() {
  local count=0 pid_file
  for pid_file in $(pid_files "$1"); do alive "$pid_file" && count=$((count + 1)); done
  echo "$count"
}

scale() {
  local service="$1" wanted="$2" replica pid_file
  known "$service"
  [[ "$wanted" =~ ^[0-9]+$ ]] || { echo "N must be a number of replicas, not '$wanted'" >&2; exit 2; }
  for replica in $(seq 1 "$wanted"); do start_replica "$service" "$replica"; done
  for pid_file in $(pid_files "$service"); do
    replica="$(basename "$pid_file" .pid)"; replica="${replica##*.}"
    ((replica > wanted)) && stop_pid_file "$pid_file"
  done
  echo "$service: $(running_count "$service") replica(s) running"
}

command="${1:-status}"; shift || true
case "$command" in
  start)
    use_api_token
    for service in "${@:-${all_services[@]}}"; do
      known "$service"
      start_replica "$service" 1
    done ;;
  scale) use_api_token; scale "${1:?usage: $0 scale SERVICE N}" "${2:?usage: $0 scale SERVICE N}" ;;
  page-url) page_url ;;
  logs)
    files=()
    for service in "${@:-${all_services[@]}}"; do
      known "$service"
      for file in "$log_dir/$service".*.log; do [[ -e "$file" ]] && files+=("$file"); done
    done
    ((${#files[@]})) || { echo "no service logs yet in $log_dir: start the stack with 'make run'" >&2; exit 1; }
    exec tail -n 20 -F "${files[@]}" ;;
  stop)
    for service in "${@:-${all_services[@]}}"; do
      for pid_file in $(pid_files "$service"); do stop_pid_file "$pid_file"; done
    done ;;
  status)
    for service in "${all_services[@]}"; do echo "$service: $(running_count "$service") replica(s) running"; done ;;
  *) echo "usage: $0 start|scale|stop|status|logs|page-url" >&2; exit 2 ;;
esac
