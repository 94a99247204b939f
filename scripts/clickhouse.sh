#!/usr/bin/env bash
# Runs the project-local ClickHouse server (the analysts' copy of the history)
# as a plain background process, not a system service:
#
#   bash scripts/clickhouse.sh start|stop|status
#   bash scripts/clickhouse.sh start-shards|stop-shards|status-shards
#
# Loopback only (127.0.0.1). Data, logs, tmp, user_files, format schemas, the
# rendered config and the pid file all live under CLICKHOUSE_DIR (default
# ./.clickhouse). Ports: CLICKHOUSE_TCP_PORT (native, default 9000) and
# CLICKHOUSE_HTTP_PORT (default 8123). `start` installs Debian's
# clickhouse-server and clickhouse-client when missing, is idempotent, and
# waits until the server answers a query.
#
# The *-shards commands run two more servers, the two shards of a sharded
# projection (--clickhouse-shards): dirs ${CLICKHOUSE_SHARD_DIR:-.clickhouse-shard}1
# and 2, native ports CLICKHOUSE_SHARD_TCP_PORTS (default "9101 9102"), http
# ports CLICKHOUSE_SHARD_HTTP_PORTS (default "8201 8202"). Each gets, besides
# config.xml, config.d/shards.xml (from infra/clickhouse/shards.xml.tmpl)
# naming both in the cluster CLICKHOUSE_CLUSTER (default "messenger"), which
# their Distributed tables use. The single server above is independent of them.
set -euo pipefail
cd "$(dirname "$0")/.."

CH_DIR="${CLICKHOUSE_DIR:-.clickhouse}"
mkdir -p "$CH_DIR"
CH_DIR="$(cd "$CH_DIR" && pwd)"
TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
TEMPLATE="infra/clickhouse/config.xml.tmpl"
SHARDS_TEMPLATE="infra/clickhouse/shards.xml.tmpl"
# Set by start-shards for each shard it starts: "host:port host:port".
SHARD_ADDRS="${CLICKHOUSE_SHARD_ADDRS:-}"
CLUSTER="${CLICKHOUSE_CLUSTER:-messenger}"
CONFIG="$CH_DIR/config.xml"
PIDFILE="$CH_DIR/clickhouse-server.pid"
LOGDIR="$CH_DIR/log"
WAIT_SECONDS="${CLICKHOUSE_WAIT_SECONDS:-60}"

say() { echo "clickhouse: $*"; }

# server_bin prints the path of clickhouse-server (in /usr/sbin, often not in
# a non-root PATH) or nothing.
server_bin() {
  if command -v clickhouse-server >/dev/null 2>&1; then
    command -v clickhouse-server
  elif [ -x /usr/sbin/clickhouse-server ]; then
    echo /usr/sbin/clickhouse-server
  fi
}

install_packages() {
  if [ -n "$(server_bin)" ] && command -v clickhouse-client >/dev/null 2>&1; then
    return 0
  fi
  say "installing clickhouse-server and clickhouse-client (apt)"
  command -v apt-get >/dev/null 2>&1 || { say "apt-get not found: install clickhouse-server and clickhouse-client yourself"; exit 1; }
  local as_root=(env DEBIAN_FRONTEND=noninteractive)
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "run as root or install sudo to install the packages"; exit 1; }
    as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
  fi
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y clickhouse-server clickhouse-client
  # The package does not start a service on its own; nothing to undo.
  [ -n "$(server_bin)" ] || { say "clickhouse-server is still missing after apt-get install"; exit 1; }
}

# pid prints the pid of our server when it is running, else nothing.
pid() {
  [ -f "$PIDFILE" ] || return 0
  local p
  p="$(cat "$PIDFILE" 2>/dev/null || true)"
  case "$p" in '' | *[!0-9]*) return 0 ;; esac
  if kill -0 "$p" 2>/dev/null && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q clickhouse; then
    echo "$p"
  fi
}

answers() {
  command -v clickhouse-client >/dev/null 2>&1 || return 1
  clickhouse-client --host 127.0.0.1 --port "$TCP_PORT" -q 'SELECT 1' >/dev/null 2>&1
}

log_tail() {
  local f
  for f in "$LOGDIR/clickhouse-server.err.log" "$LOGDIR/stdout.log" "$LOGDIR/clickhouse-server.log"; do
    if [ -s "$f" ]; then
      echo "---- tail of $f"
      tail -n 40 "$f"
    fi
  done
}

render_config() {
  [ -f "$TEMPLATE" ] || { say "template $TEMPLATE is missing"; exit 1; }
  local dir_esc
  dir_esc="$(printf '%s' "$CH_DIR" | sed -e 's/[&|\\]/\\&/g')"
  sed -e "s|@DIR@|$dir_esc|g" -e "s|@TCP_PORT@|$TCP_PORT|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
    "$TEMPLATE" >"$CONFIG.tmp"
  mv "$CONFIG.tmp" "$CONFIG"
  # A shard also names the cluster of all shards (merged from config.d).
  rm -f "$CH_DIR/config.d/shards.xml"
  if [ -n "$SHARD_ADDRS" ]; then
    [ -f "$SHARDS_TEMPLATE" ] || { say "template $SHARDS_TEMPLATE is missing"; exit 1; }
    local shards="" a
    for a in $SHARD_ADDRS; do
      shards="$shards<shard><replica><host>${a%:*}</host><port>${a##*:}</port></replica></shard>"
    done
    mkdir -p "$CH_DIR/config.d"
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@SHARDS@|$shards|g" "$SHARDS_TEMPLATE" >"$CH_DIR/config.d/shards.xml.tmp"
    mv "$CH_DIR/config.d/shards.xml.tmp" "$CH_DIR/config.d/shards.xml"
  fi
}

start() {
  local p
  p="$(pid)"
  if [ -n "$p" ]; then
    say "already running (pid $p, port $TCP_PORT, dir $CH_DIR)"
    return 0
  fi
  if answers; then
    say "a ClickHouse server not started by this script already answers on 127.0.0.1:$TCP_PORT; using it"
    return 0
  fi
  install_packages
  local bin
  bin="$(server_bin)"
  mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$LOGDIR"
  render_config
  rm -f "$PIDFILE"
  # setsid: not killed with the caller's process group (Ctrl-C of start.sh);
  # every stream redirected so no pipe of the caller is held open.
  (cd "$CH_DIR" && exec setsid "$bin" --config-file="$CONFIG" \
    </dev/null >>"$LOGDIR/stdout.log" 2>&1) &
  echo $! >"$PIDFILE"
  p="$(cat "$PIDFILE")"
  say "starting (pid $p) on 127.0.0.1:$TCP_PORT (http $HTTP_PORT), data in $CH_DIR"
  local i
  for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
    if answers; then
      say "ready: clickhouse-client --port $TCP_PORT"
      return 0
    fi
    if ! kill -0 "$p" 2>/dev/null; then
      say "the server exited during start"
      rm -f "$PIDFILE"
      log_tail
      exit 1
    fi
    sleep 0.5
  done
  say "no answer on 127.0.0.1:$TCP_PORT after ${WAIT_SECONDS}s"
  log_tail
  exit 1
}

stop() {
  local p i
  p="$(pid)"
  if [ -z "$p" ]; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$p" 2>/dev/null; then
    say "still running after 30s: SIGKILL"
    kill -KILL "$p" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.25
    done
  fi
  rm -f "$PIDFILE"
  say "stopped (pid $p)"
}

status() {
  local p
  p="$(pid)"
  if [ -n "$p" ]; then
    if answers; then
      say "running (pid $p) on 127.0.0.1:$TCP_PORT, answering; data in $CH_DIR"
    else
      say "running (pid $p) on 127.0.0.1:$TCP_PORT, not answering yet; data in $CH_DIR"
    fi
    return 0
  fi
  if answers; then
    say "not started by this script, but a server answers on 127.0.0.1:$TCP_PORT"
    return 0
  fi
  say "not running"
  return 3
}

SHARD_DIR="${CLICKHOUSE_SHARD_DIR:-.clickhouse-shard}"
read -r -a SHARD_TCP <<<"${CLICKHOUSE_SHARD_TCP_PORTS:-9101 9102}"
read -r -a SHARD_HTTP <<<"${CLICKHOUSE_SHARD_HTTP_PORTS:-8201 8202}"

# shards runs this script's $1 (start, stop, status) for every shard, each
# with its own dir and ports; it returns the first failure.
shards() {
  local i addrs="" rc=0
  [ "${#SHARD_TCP[@]}" = "${#SHARD_HTTP[@]}" ] || { say "CLICKHOUSE_SHARD_TCP_PORTS and CLICKHOUSE_SHARD_HTTP_PORTS differ in length"; exit 2; }
  for i in "${!SHARD_TCP[@]}"; do addrs="$addrs 127.0.0.1:${SHARD_TCP[$i]}"; done
  for i in "${!SHARD_TCP[@]}"; do
    CLICKHOUSE_DIR="$SHARD_DIR$((i + 1))" CLICKHOUSE_TCP_PORT="${SHARD_TCP[$i]}" \
      CLICKHOUSE_HTTP_PORT="${SHARD_HTTP[$i]}" CLICKHOUSE_SHARD_ADDRS="${addrs# }" \
      bash "$0" "$1" || { [ "$rc" != 0 ] || rc=$?; }
  done
  if [ "$1" = start ] && [ "$rc" = 0 ]; then
    say "shards ready: --clickhouse-shards $(echo $addrs | tr ' ' ',') --clickhouse-cluster $CLUSTER"
  fi
  return "$rc"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  start-shards) shards start ;;
  stop-shards) shards stop ;;
  status-shards) shards status ;;
  *)
    echo "usage: $0 start|stop|status|start-shards|stop-shards|status-shards" >&2
    exit 2
    ;;
esac
