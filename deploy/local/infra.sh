#!/usr/bin/env bash
# Runs the servers dealflow needs locally, without Docker: Apache Kafka (single-node KRaft)
# and FerretDB (MongoDB wire protocol on SQLite), both on 127.0.0.1 only.
# See deploy/local/README.md, or run `infra.sh help`.
set -euo pipefail

readonly KAFKA_VERSION=4.1.1 # must match deploy/local/kafka/pom.xml
readonly FERRETDB_VERSION=v1.24.2
readonly HOST=127.0.0.1

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
STATE_DIR=${DEALFLOW_STATE_DIR:-$REPO_ROOT/.local}
# Made absolute because the servers are started with these paths and outlive this cwd.
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)

CACHE_DIR=$STATE_DIR/cache
LOG_DIR=$STATE_DIR/logs
RUN_DIR=$STATE_DIR/run

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_TEMPLATE=$SCRIPT_DIR/kafka/server.properties.template
KAFKA_LOG4J=$SCRIPT_DIR/kafka/log4j2.properties
KAFKA_LIBS=$CACHE_DIR/kafka-libs
KAFKA_HOME=$STATE_DIR/kafka
KAFKA_DATA=$KAFKA_HOME/data
KAFKA_CONF=$KAFKA_HOME/server.properties
KAFKA_CLUSTER_ID_FILE=$KAFKA_HOME/cluster.id
KAFKA_PORT=${DEALFLOW_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${DEALFLOW_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_PARTITIONS=${DEALFLOW_PARTITIONS:-6}
# Each partition costs heap; a day of test namespaces (thousands of partitions) outgrows 512 MB.
KAFKA_HEAP=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT=${DEALFLOW_KAFKA_START_TIMEOUT:-90}

FERRETDB_BIN=$CACHE_DIR/bin/ferretdb
# The binary alone could be a leftover of an older pinned version; the stamp names the version.
# The suffix names the source patches below: changing it rebuilds cached binaries.
FERRETDB_STAMP=$CACHE_DIR/bin/.ferretdb-$FERRETDB_VERSION-idpatch3.ok
# Diffs applied to FerretDB's source before it is built (see fetch_ferretdb).
FERRETDB_PATCHES=$SCRIPT_DIR/ferretdb-patches
FERRETDB_HOME=$STATE_DIR/ferretdb
FERRETDB_DATA=$FERRETDB_HOME/data
FERRETDB_STATE=$FERRETDB_HOME/state
FERRETDB_PORT=${DEALFLOW_FERRETDB_PORT:-27017}
FERRETDB_START_TIMEOUT=${DEALFLOW_FERRETDB_START_TIMEOUT:-30}

STOP_TIMEOUT=20
ALL_SERVERS=(kafka ferretdb)

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

say() { printf 'infra: %s\n' "$*"; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required ($2) but was not found on PATH"
}

usage() {
  cat <<EOF
usage: $(basename "$0") <command> [kafka|ferretdb]

  up [server]              download/build if needed, start, wait until the server answers
  down [--purge] [server]  stop (SIGTERM, SIGKILL after ${STOP_TIMEOUT}s); --purge also deletes its data
  clean [server]           same as down --purge (the download/build cache is kept)
  status                   one line per server: running / stopped / external
  logs [-f] [server]       show the last 50 log lines, or follow the logs
  fetch [server]           only download/build into the cache (e.g. to warm up CI)

state dir: $STATE_DIR
EOF
}

log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

server_port() {
  case $1 in
    kafka) printf '%s' "$KAFKA_PORT" ;;
    ferretdb) printf '%s' "$FERRETDB_PORT" ;;
  esac
}

# An env var pointing elsewhere means the user runs that server themselves; we must not touch it.
external_value() {
  case $1 in
    kafka) printf '%s' "${KAFKA_BOOTSTRAP_SERVERS:-}" ;;
    ferretdb) printf '%s' "${MONGODB_URI:-}" ;;
  esac
}

external_var() {
  case $1 in
    kafka) printf 'KAFKA_BOOTSTRAP_SERVERS' ;;
    ferretdb) printf 'MONGODB_URI' ;;
  esac
}

is_external() { [[ -n $(external_value "$1") ]]; }

# A string only our own instance has on its command line (it embeds this state dir), so
# pid reuse or another developer's server is never mistaken for ours.
server_signature() {
  case $1 in
    kafka) printf 'kafka.Kafka %s' "$KAFKA_CONF" ;;
    ferretdb) printf -- '--state-dir=%s' "$FERRETDB_STATE" ;;
  esac
}

# Zombies still pass `kill -0`; a server that died as our own child must count as gone.
pid_alive() {
  local stat
  [[ -r /proc/$1/stat ]] || return 1
  stat=$(<"/proc/$1/stat") || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

pid_is_server() {
  local pid=$1 signature args=()
  signature=$(server_signature "$2")
  pid_alive "$pid" || return 1
  mapfile -d '' args 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [[ " ${args[*]} " == *" $signature "* ]]
}

# Prints the pids of our instance of a server: the pid file first, then a /proc scan, which
# also finds a server whose pid file was lost (e.g. a state dir partly deleted by hand).
server_pids() {
  local server=$1 pidfile pid proc found=()
  pidfile=$(pid_file "$server")
  if [[ -f $pidfile ]]; then
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && pid_is_server "$pid" "$server"; then
      found+=("$pid")
    fi
  fi
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ $pid == "$$" || " ${found[*]} " == *" $pid "* ]] && continue
    pid_is_server "$pid" "$server" && found+=("$pid")
  done
  if ((${#found[@]})); then printf '%s\n' "${found[@]}"; fi
}

first_pid() { server_pids "$1" | head -n 1; }

port_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash, which gets host and port as $0 $1
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

port_owner() {
  local owner
  owner=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n 1 || true)
  printf '%s' "${owner:-unknown process}"
}

require_free_port() {
  local port=$1 server=$2
  if port_open "$port"; then
    die "port $HOST:$port (needed by $server) is already in use by $(port_owner "$port"); stop that process, or set $(external_var "$server") to use an external $server"
  fi
}

# A real MongoDB `ping` over OP_MSG, so "ready" means FerretDB answers commands, not just that
# the socket is bound. Stdlib only: the project's virtualenv may not exist yet.
mongo_ping() {
  python3 - "$HOST" "$1" <<'PY' 2>/dev/null
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
elements = b"\x10ping\x00" + struct.pack("<i", 1) + b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
doc = struct.pack("<i", 4 + len(elements) + 1) + elements + b"\x00"
body = struct.pack("<I", 0) + b"\x00" + doc
message = struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

with socket.create_connection((host, port), timeout=2) as sock:
    sock.settimeout(2)
    sock.sendall(message)
    (length,) = struct.unpack("<i", recv_exact(sock, 4))
    reply = recv_exact(sock, length - 4)
sys.exit(0 if b"\x01ok\x00" + struct.pack("<d", 1.0) in reply else 1)
PY
}

is_ready() {
  case $1 in
    kafka) grep -q 'Kafka Server started' "$(log_file kafka)" 2>/dev/null && port_open "$KAFKA_PORT" ;;
    ferretdb) mongo_ping "$FERRETDB_PORT" ;;
  esac
}

describe_running() {
  printf 'pid %s, %s:%s' "$1" "$HOST" "$(server_port "$2")"
}

show_log_tail() {
  local log
  log=$(log_file "$1")
  printf 'infra: read %s; its last 30 lines:\n' "$log" >&2
  tail -n 30 "$log" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------- cache: downloads and builds

fetch_kafka() {
  local want
  want="$KAFKA_VERSION $(sha256sum "$KAFKA_POM" | cut -d ' ' -f 1)"
  if [[ -f $KAFKA_LIBS/.complete && $(<"$KAFKA_LIBS/.complete") == "$want" ]]; then
    return 0
  fi
  need mvn "to download the Kafka jars from Maven Central"
  say "downloading Kafka $KAFKA_VERSION jars from Maven Central (first run only)..."
  mkdir -p "$CACHE_DIR"
  # Download next to the cache and swap it in only when complete, so an interrupted run is redone.
  rm -rf "$KAFKA_LIBS.partial"
  mkdir -p "$LOG_DIR"
  # Maven's output is captured because even -B -q leaves stray ANSI codes on the terminal.
  local mvn_log=$LOG_DIR/kafka-download.log
  if ! mvn -B -q -f "$KAFKA_POM" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.partial" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    die "downloading the Kafka jars failed; full Maven output in $mvn_log"
  fi
  printf '%s\n' "$want" >"$KAFKA_LIBS.partial/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.partial" "$KAFKA_LIBS"
}

fetch_ferretdb() {
  [[ -x $FERRETDB_BIN && -f $FERRETDB_STAMP ]] && return 0
  need go "to build FerretDB from the Go module proxy"
  say "building FerretDB $FERRETDB_VERSION from source (first run only, about a minute)..."
  # Pinned local toolchain and pure-Go SQLite: no toolchain downloads, no C compiler needed.
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  local download module_dir src
  mkdir -p "$CACHE_DIR/bin"
  # Run outside any go.mod, so a Go project in the caller's cwd cannot influence resolution.
  download=$(cd "$CACHE_DIR" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION") ||
    die "downloading the FerretDB $FERRETDB_VERSION module failed: $download"
  module_dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")
  [[ -n $module_dir && -d $module_dir ]] || die "go mod download did not report a module dir: $download"
  # `go install` of FerretDB panics at startup: its version.txt is generated by its own build
  # tooling and is absent from the module zip. So build from a writable copy that has one.
  src=$CACHE_DIR/ferretdb-src
  rm -rf "$src"
  cp -R "$module_dir" "$src"
  chmod -R u+w "$src"
  printf '%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  # FerretDB 1.24's SQLite backend writes its `_id` lookups as `sjson->'$._id'`, but indexes `_id` as
  # `sjson->"_id"`; SQLite matches index expressions literally, so every update and delete by `_id`
  # scans the whole collection (about 5 ms at 2,000 documents, growing linearly). `sjson->'_id'` means
  # the same path and matches the index. Fail loudly if upstream code moved and the patch misses.
  local id_column=$src/internal/backends/sqlite/metadata/metadata.go
  grep -q "IDColumn = DefaultColumn + \"->'\$._id'\"" "$id_column" ||
    die "cannot apply the _id index patch: $id_column changed upstream"
  sed -i "s/IDColumn = DefaultColumn + \"->'\$._id'\"/IDColumn = DefaultColumn + \"->'_id'\"/" "$id_column"
  grep -q "IDColumn = DefaultColumn + \"->'_id'\"" "$id_column" || die "the _id index patch did not apply to $id_column"
  # Its queries push an `_id` filter down to SQLite only when `_id` is the filter's only key and a
  # string or ObjectID, so a conditional write such as {_id, version} scans the collection, and so
  # does a batch read `_id: {$in: [...]}` (50 ids of 3 KB documents: 0.2 s at 2,000, 2 s at 20,000;
  # pushed down, 10 ms). The backend contract allows a partial pushdown (the handler applies the whole
  # filter to what comes back), so the patch pushes `_id` down whenever it is there, and an `$in` of
  # strings and ObjectIDs as `IN (?, ...)` on the indexed expression; any other `_id` condition, and
  # a filter with `_id` twice (which FerretDB's Document.Get panics on), is left to the handler.
  # Query and Explain share the code, so explain's `filterPushdown` says what a query does (the
  # integration test relies on that). Too much to sed reliably, so it is a diff; -F0 (no fuzz) and a
  # dry run first, so upstream drift fails the build instead of half-applying.
  need patch "to apply deploy/local/ferretdb-patches/ to FerretDB's source"
  local pushdown_patch=$FERRETDB_PATCHES/sqlite-id-pushdown.patch out
  [[ -f $pushdown_patch ]] || die "the _id pushdown patch $pushdown_patch is missing"
  out=$(cd "$src" && patch -p1 --batch --forward -F0 --dry-run <"$pushdown_patch" 2>&1) ||
    die "cannot apply $pushdown_patch: FerretDB's source changed upstream: $out"
  out=$(cd "$src" && patch -p1 --batch --forward -F0 --no-backup-if-mismatch <"$pushdown_patch" 2>&1) ||
    die "applying $pushdown_patch failed: $out"
  (cd "$src" && go build -buildvcs=false -trimpath -o "$FERRETDB_BIN.partial" ./cmd/ferretdb) ||
    die "building FerretDB failed (see the Go output above)"
  "$FERRETDB_BIN.partial" --version | grep -q "version: $FERRETDB_VERSION" ||
    die "the freshly built FerretDB does not report version $FERRETDB_VERSION"
  mv "$FERRETDB_BIN.partial" "$FERRETDB_BIN"
  rm -rf "$src" "$CACHE_DIR"/bin/.ferretdb-*.ok
  touch "$FERRETDB_STAMP"
}

# ---------------------------------------------------------------- starting

render_kafka_conf() {
  [[ $KAFKA_PARTITIONS =~ ^[1-9][0-9]*$ ]] || die "DEALFLOW_PARTITIONS must be a positive integer, got '$KAFKA_PARTITIONS'"
  local conf
  conf=$(<"$KAFKA_TEMPLATE")
  # Quoted replacements: bash 5.2 would otherwise expand '&' in a path to the matched text.
  conf=${conf//@DATA_DIR@/"$KAFKA_DATA"}
  conf=${conf//@PARTITIONS@/"$KAFKA_PARTITIONS"}
  conf=${conf//@CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}
  conf=${conf//@PORT@/"$KAFKA_PORT"}
  printf '%s\n' "$conf" >"$KAFKA_CONF"
}

format_kafka_storage() {
  # `format -g` would skip a formatted dir by itself, but checking first saves a JVM start per `up`.
  [[ -f $KAFKA_DATA/meta.properties ]] && return 0
  local cluster_id log
  log=$(log_file kafka)
  if [[ -s $KAFKA_CLUSTER_ID_FILE ]]; then
    cluster_id=$(<"$KAFKA_CLUSTER_ID_FILE")
  else
    cluster_id=$("$JAVA" -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool random-uuid 2>>"$log" | tail -n 1)
    [[ -n $cluster_id ]] || { show_log_tail kafka; die "could not generate a Kafka cluster id"; }
    printf '%s\n' "$cluster_id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  say "formatting Kafka storage (cluster id $cluster_id)"
  "$JAVA" -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" --standalone -g >>"$log" 2>&1 ||
    { show_log_tail kafka; die "formatting Kafka storage failed"; }
}

# Each start gets a fresh log, so readiness checks never match a line from a previous run;
# the previous run's log is kept next to it for post-mortems.
rotate_log() {
  local log
  log=$(log_file "$1")
  mkdir -p "$LOG_DIR"
  [[ -f $log ]] && mv -f "$log" "$log.prev"
  : >"$log"
}

launch_kafka() {
  mkdir -p "$KAFKA_DATA"
  render_kafka_conf
  format_kafka_storage
  # setsid: own session, so the broker outlives this shell and `make` and never gets their SIGHUP.
  # 9>&-: the child must not inherit the infra lock, or it would hold it for its whole life.
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  setsid "$JAVA" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$KAFKA_CONF" </dev/null >>"$(log_file kafka)" 2>&1 9>&- &
  printf '%s\n' "$!" >"$(pid_file kafka)"
}

launch_ferretdb() {
  mkdir -p "$FERRETDB_DATA" "$FERRETDB_STATE"
  # The trailing slash matters: FerretDB treats the sqlite URL as a directory of databases.
  setsid "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$FERRETDB_DATA/" \
    --listen-addr="$HOST:$FERRETDB_PORT" --state-dir="$FERRETDB_STATE" \
    --telemetry=disable --debug-addr=- --log-level=warn \
    </dev/null >>"$(log_file ferretdb)" 2>&1 9>&- &
  printf '%s\n' "$!" >"$(pid_file ferretdb)"
}

wait_ready() {
  local server=$1 pid=$2 timeout=$3 deadline
  deadline=$((SECONDS + timeout))
  until is_ready "$server"; do
    if ! pid_alive "$pid"; then
      rm -f "$(pid_file "$server")"
      show_log_tail "$server"
      die "$server exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      say "$server did not answer within ${timeout}s; stopping it" >&2
      show_log_tail "$server"
      stop_server "$server" >/dev/null
      die "$server failed to start"
    fi
    sleep 0.5
  done
}

up_server() {
  local server=$1 pid port timeout started=$SECONDS
  if is_external "$server"; then
    say "$server: external ($(external_var "$server")=$(external_value "$server")), not starting it"
    return 0
  fi
  case $server in
    kafka) need "$JAVA" "to run Kafka" ;;
    ferretdb) need python3 "to check that FerretDB answers" ;;
  esac
  port=$(server_port "$server")
  pid=$(first_pid "$server")
  if [[ -n $pid ]]; then
    # Rewritten in case it was lost: `down` and status are faster and exact with it.
    mkdir -p "$RUN_DIR"
    printf '%s\n' "$pid" >"$(pid_file "$server")"
    if is_ready "$server"; then
      say "$server: already running ($(describe_running "$pid" "$server"))"
      return 0
    fi
    # Ours but not answering yet: most likely an earlier `up` was interrupted while it waited.
    say "$server: process $pid exists but does not answer yet; waiting for it"
  else
    require_free_port "$port" "$server"
    [[ $server == kafka ]] && require_free_port "$KAFKA_CONTROLLER_PORT" "$server"
    case $server in
      kafka) fetch_kafka ;;
      ferretdb) fetch_ferretdb ;;
    esac
    mkdir -p "$RUN_DIR"
    rotate_log "$server"
    say "$server: starting..."
    "launch_$server"
    pid=$(<"$(pid_file "$server")")
  fi
  case $server in
    kafka) timeout=$KAFKA_START_TIMEOUT ;;
    ferretdb) timeout=$FERRETDB_START_TIMEOUT ;;
  esac
  wait_ready "$server" "$pid" "$timeout"
  say "$server: ready in $((SECONDS - started))s ($(describe_running "$pid" "$server"))"
}

# ---------------------------------------------------------------- stopping

wait_gone() {
  local deadline=$((SECONDS + $1)) pid
  shift
  while ((SECONDS < deadline)); do
    for pid in "$@"; do
      pid_alive "$pid" && break
      pid=
    done
    [[ -z $pid ]] && return 0
    sleep 0.2
  done
  return 1
}

stop_server() {
  local server=$1 pids=() pid
  mapfile -t pids < <(server_pids "$server")
  if ((${#pids[@]} == 0)); then
    rm -f "$(pid_file "$server")"
    say "$server: not running"
    return 0
  fi
  say "$server: stopping (pid ${pids[*]})..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  if ! wait_gone "$STOP_TIMEOUT" "${pids[@]}"; then
    say "$server: still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 5 "${pids[@]}" || die "$server (pid ${pids[*]}) survived SIGKILL"
  fi
  rm -f "$(pid_file "$server")"
  say "$server: stopped"
}

down_server() {
  local server=$1 purge=$2
  if is_external "$server"; then
    say "$server: external ($(external_var "$server")=$(external_value "$server")), not stopping it"
  else
    stop_server "$server"
  fi
  if [[ $purge == yes ]]; then
    # Cluster id and rendered config go too: a fresh data dir must be formatted from scratch.
    case $server in
      kafka) rm -rf "$KAFKA_HOME" ;;
      ferretdb) rm -rf "$FERRETDB_HOME" ;;
    esac
    say "$server: data deleted"
  fi
}

# ---------------------------------------------------------------- reporting

status_server() {
  local server=$1 pid
  if is_external "$server"; then
    printf '%-9s external (%s=%s)\n' "$server" "$(external_var "$server")" "$(external_value "$server")"
    return 0
  fi
  pid=$(first_pid "$server")
  if [[ -z $pid ]]; then
    printf '%-9s stopped\n' "$server"
  elif is_ready "$server"; then
    printf '%-9s running (%s)\n' "$server" "$(describe_running "$pid" "$server")"
  else
    printf '%-9s not answering (pid %s, %s:%s; see %s)\n' \
      "$server" "$pid" "$HOST" "$(server_port "$server")" "$(log_file "$server")"
  fi
}

show_logs() {
  local follow=no servers=() files=() server
  for arg in "$@"; do
    case $arg in
      -f | --follow) follow=yes ;;
      *) check_server "$arg" && servers+=("$arg") ;;
    esac
  done
  ((${#servers[@]})) || servers=("${ALL_SERVERS[@]}")
  for server in "${servers[@]}"; do
    files+=("$(log_file "$server")")
  done
  if [[ $follow == yes ]]; then
    exec tail -n 50 -F "${files[@]}"
  fi
  for server in "${servers[@]}"; do
    printf '==> %s <==\n' "$(log_file "$server")"
    tail -n 50 "$(log_file "$server")" 2>/dev/null || printf '(no log yet)\n'
  done
}

# ---------------------------------------------------------------- command line

check_server() {
  case $1 in
    kafka | ferretdb) ;;
    *) die "unknown server '$1' (expected kafka or ferretdb)" ;;
  esac
}

# Serialises up/down/clean/fetch, e.g. under `make -j` or two terminals, so two callers can't
# both decide a server is stopped and start it twice.
take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/infra.lock"
  flock -w 600 9 || die "another infra.sh has held $RUN_DIR/infra.lock for 10 minutes"
}

main() {
  local command=${1:-help} purge=no servers=() server
  (($#)) && shift
  if [[ $command == logs ]]; then
    show_logs "$@"
    return
  fi
  for arg in "$@"; do
    case $arg in
      --purge) [[ $command == down ]] || die "--purge only applies to 'down'"; purge=yes ;;
      *) check_server "$arg" && servers+=("$arg") ;;
    esac
  done
  ((${#servers[@]})) || servers=("${ALL_SERVERS[@]}")

  case $command in
    up)
      take_lock
      for server in "${servers[@]}"; do up_server "$server"; done
      ;;
    down | clean)
      [[ $command == clean ]] && purge=yes
      take_lock
      for server in "${servers[@]}"; do down_server "$server" "$purge"; done
      ;;
    status)
      for server in "${servers[@]}"; do status_server "$server"; done
      ;;
    fetch)
      take_lock
      for server in "${servers[@]}"; do "fetch_$server"; done
      say "cache ready in $CACHE_DIR"
      ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
