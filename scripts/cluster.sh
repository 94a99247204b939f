#!/usr/bin/env bash
# A whole cluster on one machine, every role a process of its own:
#
#   bash scripts/cluster.sh up            # build bin/messenger, start what is not running, wait until ready
#   bash scripts/cluster.sh status        # each process: pid, alive, /readyz
#   bash scripts/cluster.sh smoke         # a message through edge 1 to a user polling edge 2, then in ClickHouse
#   bash scripts/cluster.sh down [--wipe] # SIGTERM everything (SIGKILL after CLUSTER_STOP_SECONDS); --wipe removes the data
#
# What `up` runs (loopback only, ports + CLUSTER_PORT_OFFSET):
#   nats-1..3    `messenger nats`, clustered: clients 4222-4224, routes 6222-6224, /readyz 18101-18103
#   setup        `messenger setup --replicas 3 --partitions 12` (the streams, once the nodes are up)
#   projector-1,2  sharing the partitions, /readyz 18131-18132
#   fanout-1,2     sharing the partitions, /readyz 18111-18112
#   presence       /readyz 18121
#   notifier       /readyz 18141, only if `bin/messenger notifier -h` works; Web Push
#                  with .cluster's own key (no FCM/APNs keys here)
#   edge-1,2       --dev, http://127.0.0.1:8081 and :8082 (web page, WebSocket, API)
#   ClickHouse     scripts/clickhouse.sh start (database CLUSTER_CLICKHOUSE_DB); with
#                  CLUSTER_CLICKHOUSE_SHARDS=2 also start-shards, and the projectors and
#                  edges use the two shards (9101, 9102) through Distributed tables.
#
# Everything lives under CLUSTER_DIR (default ./.cluster, mode 0700): identities
# (creds/), each node's JetStream (nats-N/), the roles' --data with the development
# secret (roles/), a log (log/NAME.log) and a pid file (run/NAME.pid) per process.
# Processes are started detached (setsid): they outlive this script and the
# terminal. `up` twice starts nothing twice. ClickHouse is stopped by `down` only
# if `up` started it.
#
# Settings (environment): CLUSTER_DIR, CLUSTER_PORT_OFFSET (0), CLUSTER_PARTITIONS
# (12), CLUSTER_REPLICAS (3), CLUSTER_CLICKHOUSE_DB (messenger_cluster),
# CLUSTER_CLICKHOUSE_SHARDS (0 or 2), CLUSTER_NO_CLICKHOUSE=1 (no projector, history
# from the streams), CLUSTER_BIN (a binary to use instead of building bin/messenger),
# CLUSTER_ROLE_ARGS (more flags for every role, space-separated), CLUSTER_WAIT_SECONDS
# (90, per wait), CLUSTER_STOP_SECONDS (20). MESSENGER_* variables of the caller are
# not passed on: the cluster is the same whatever the shell holds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
umask 077

DIR="${CLUSTER_DIR:-.cluster}"
case "$DIR" in /*) ;; *) DIR="$ROOT/$DIR" ;; esac
# What defines the cluster is kept by the first `up` in $DIR/settings and read
# back by every later command, so `down` or `smoke` need no environment.
SETTINGS="$DIR/settings"
KEPT=(CLUSTER_PORT_OFFSET CLUSTER_PARTITIONS CLUSTER_REPLICAS CLUSTER_CLICKHOUSE_DB CLUSTER_CLICKHOUSE_SHARDS CLUSTER_NO_CLICKHOUSE)
if [ -f "$SETTINGS" ]; then
  for k in "${KEPT[@]}"; do declare "given_$k=${!k:-}"; done
  # shellcheck disable=SC1090
  . "$SETTINGS"
  for k in "${KEPT[@]}"; do
    g="given_$k"
    if [ -n "${!g}" ] && [ "${!g}" != "${!k:-}" ]; then
      echo "cluster: $k=${!g} ignored: this cluster was made with $k=${!k:-} ($SETTINGS; 'down --wipe' to start anew)" >&2
    fi
  done
fi
OFF="${CLUSTER_PORT_OFFSET:-0}"
PARTITIONS="${CLUSTER_PARTITIONS:-12}"
REPLICAS="${CLUSTER_REPLICAS:-3}"
CH_DB="${CLUSTER_CLICKHOUSE_DB:-messenger_cluster}"
CH_SHARDS="${CLUSTER_CLICKHOUSE_SHARDS:-0}"
NO_CH="${CLUSTER_NO_CLICKHOUSE:-0}"
WAIT="${CLUSTER_WAIT_SECONDS:-90}"
STOP_WAIT="${CLUSTER_STOP_SECONDS:-20}"
read -r -a ROLE_ARGS <<<"${CLUSTER_ROLE_ARGS:-}"
BIN="${CLUSTER_BIN:-$ROOT/bin/messenger}"
CREDS="$DIR/creds"
ROLES_DATA="$DIR/roles"
LOGS="$DIR/log"
RUN="$DIR/run"
H=127.0.0.1

say() { echo "cluster: $*"; }
# rel PATH: PATH relative to the project when it is inside it.
rel() { case "$1" in "$ROOT"/*) echo "${1#"$ROOT"/}" ;; *) echo "$1" ;; esac; }
fail() { echo "cluster: $*" >&2; exit 1; }

case "$CH_DB" in '' | *[!A-Za-z0-9_]*) fail "CLUSTER_CLICKHOUSE_DB must be letters, digits and _" ;; esac
case "$OFF" in '' | *[!0-9]*) fail "CLUSTER_PORT_OFFSET must be a number" ;; esac
case "$CH_SHARDS" in 0 | 2) ;; *) fail "CLUSTER_CLICKHOUSE_SHARDS must be 0 or 2 (the two servers of scripts/clickhouse.sh start-shards)" ;; esac

port() { echo $(($1 + OFF)); }
NATS_URLS="nats://$H:$(port 4222),nats://$H:$(port 4223),nats://$H:$(port 4224)"
ROUTES="nats-route://$H:$(port 6222),nats-route://$H:$(port 6223),nats-route://$H:$(port 6224)"
SHARD1="$H:${CLICKHOUSE_SHARD1_PORT:-9101}"
SHARD2="$H:${CLICKHOUSE_SHARD2_PORT:-9102}"
if [ "$CH_SHARDS" = 2 ]; then
  CH_ADDR="$SHARD1"
  CH_FLAGS=(--clickhouse "$SHARD1" --clickhouse-shards "$SHARD1,$SHARD2" --clickhouse-db "$CH_DB")
else
  CH_ADDR="$H:${CLICKHOUSE_TCP_PORT:-9000}"
  CH_FLAGS=(--clickhouse "$CH_ADDR" --clickhouse-db "$CH_DB")
fi
[ "$NO_CH" = 1 ] && CH_FLAGS=(--clickhouse "")

# The processes, in start order: name and /readyz port. The notifier is added
# by has_notifier when the binary has that role.
NODES=(nats-1 nats-2 nats-3)
PROJECTORS=(projector-1 projector-2)
[ "$NO_CH" = 1 ] && PROJECTORS=()
FANOUTS=(fanout-1 fanout-2)
EDGES=(edge-1 edge-2)
http_port() {
  case "$1" in
    nats-1) port 18101 ;; nats-2) port 18102 ;; nats-3) port 18103 ;;
    fanout-1) port 18111 ;; fanout-2) port 18112 ;;
    presence) port 18121 ;;
    projector-1) port 18131 ;; projector-2) port 18132 ;;
    notifier) port 18141 ;;
    edge-1) port 8081 ;; edge-2) port 8082 ;;
    *) return 1 ;;
  esac
}

# The environment of every child: the caller's without MESSENGER_*.
child_env=(env)
while IFS='=' read -r k _; do
  case "$k" in MESSENGER_*) child_env+=(-u "$k") ;; esac
done < <(env)

# pid prints the pid of NAME when it runs (a messenger of this cluster), else nothing.
pid() {
  local f="$RUN/$1.pid" p
  [ -f "$f" ] || return 0
  p="$(cat "$f" 2>/dev/null || true)"
  case "$p" in '' | *[!0-9]*) return 0 ;; esac
  if kill -0 "$p" 2>/dev/null && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$DIR/"; then
    echo "$p"
  fi
}

ready() { curl -sf -o /dev/null --max-time 2 "http://$H:$(http_port "$1")/readyz"; }

log_tail() {
  echo "---- last lines of $LOGS/$1.log" >&2
  tail -n "${2:-20}" "$LOGS/$1.log" >&2 2>/dev/null || true
}

# launch NAME ARGS...: starts bin/messenger ARGS detached unless NAME runs.
launch() {
  local name="$1" p
  shift
  p="$(pid "$name")"
  if [ -n "$p" ]; then
    say "$name already running (pid $p)"
    return 0
  fi
  mkdir -p "$LOGS" "$RUN"
  echo "=== cluster: start $name at $(date -u +%FT%TZ): $*" >>"$LOGS/$name.log"
  ("${child_env[@]}" setsid "$BIN" "$@" </dev/null >>"$LOGS/$name.log" 2>&1) &
  echo $! >"$RUN/$name.pid"
  say "$name started (pid $!, log $(rel "$LOGS/$name.log"))"
}

# wait_ready NAME...: every NAME answers /readyz 200 within WAIT seconds, or
# the script fails naming the first one that did not, with its log tail.
wait_ready() {
  local deadline=$((SECONDS + WAIT)) name
  for name in "$@"; do
    while ! ready "$name"; do
      if [ -z "$(pid "$name")" ]; then
        log_tail "$name"
        fail "$name exited during start (log above; 'bash scripts/cluster.sh down' stops the rest)"
      fi
      if ((SECONDS >= deadline)); then
        log_tail "$name"
        fail "$name not ready after ${WAIT}s on http://$H:$(http_port "$name")/readyz (log above)"
      fi
      sleep 0.3
    done
  done
}

has_notifier() { "$BIN" notifier -h >/dev/null 2>&1; }

common() { echo --partitions "$PARTITIONS" --replicas "$REPLICAS" --shutdown-timeout 10s; }

# role_args NAME: flags every role process gets.
role() {
  local name="$1" kind="$2"
  shift 2
  # shellcheck disable=SC2046
  launch "$name" "$kind" --http "$H:$(http_port "$name")" --data "$ROLES_DATA" \
    --nats "$NATS_URLS" --nats-creds "$CREDS" $(common) "$@" "${ROLE_ARGS[@]}"
}

clickhouse_up() {
  [ "$NO_CH" = 1 ] && return 0
  if ! bash scripts/clickhouse.sh status >/dev/null 2>&1; then
    bash scripts/clickhouse.sh start
    touch "$RUN/clickhouse.started"
  else
    say "ClickHouse already answers on $H:${CLICKHOUSE_TCP_PORT:-9000}; using it (database $CH_DB)"
  fi
  if [ "$CH_SHARDS" = 2 ]; then
    if ! bash scripts/clickhouse.sh status-shards >/dev/null 2>&1; then
      bash scripts/clickhouse.sh start-shards
      touch "$RUN/clickhouse-shards.started"
    else
      say "the ClickHouse shards already answer; using them"
    fi
  fi
}

up() {
  mkdir -p "$LOGS" "$RUN" "$ROLES_DATA"
  if [ ! -f "$SETTINGS" ]; then
    {
      echo "CLUSTER_PORT_OFFSET=$OFF"
      echo "CLUSTER_PARTITIONS=$PARTITIONS"
      echo "CLUSTER_REPLICAS=$REPLICAS"
      echo "CLUSTER_CLICKHOUSE_DB=$CH_DB"
      echo "CLUSTER_CLICKHOUSE_SHARDS=$CH_SHARDS"
      echo "CLUSTER_NO_CLICKHOUSE=$NO_CH"
    } >"$SETTINGS"
  fi
  if [ -z "${CLUSTER_BIN:-}" ]; then
    say "building bin/messenger"
    mkdir -p bin
    go build -o bin/messenger ./cmd/messenger
  fi
  [ -x "$BIN" ] || fail "no binary at $BIN"
  clickhouse_up
  "${child_env[@]}" "$BIN" nats-creds --nats-creds "$CREDS" >>"$LOGS/nats-creds.log" 2>&1 ||
    { log_tail nats-creds; fail "messenger nats-creds failed"; }
  # The development secret, made once before the two edges start, so that
  # both use the same one (a token from either edge's sign-in works on both).
  "${child_env[@]}" "$BIN" token cluster --dev --data "$ROLES_DATA" >/dev/null ||
    fail "could not make the development secret under $ROLES_DATA"

  local i name
  for i in 1 2 3; do
    name="nats-$i"
    # shellcheck disable=SC2046
    launch "$name" nats --http "$H:$(http_port "$name")" --data "$DIR/$name" --nats-creds "$CREDS" \
      --nats-listen "$H:$(port $((4221 + i)))" --nats-server-name "n$i" --nats-cluster-name messenger \
      --nats-cluster-listen "$H:$(port $((6221 + i)))" --nats-routes "$ROUTES" $(common) "${ROLE_ARGS[@]}"
  done
  wait_ready "${NODES[@]}"

  # Streams and buckets, R3, as the admin identity; the cluster may still be
  # electing its meta leader, so it is tried again until the deadline.
  local deadline=$((SECONDS + WAIT))
  # shellcheck disable=SC2046
  until "${child_env[@]}" "$BIN" setup --nats "$NATS_URLS" --nats-creds "$CREDS" $(common) >>"$LOGS/setup.log" 2>&1; do
    if ((SECONDS >= deadline)); then
      log_tail setup
      fail "messenger setup did not succeed within ${WAIT}s (log above)"
    fi
    sleep 1
  done
  say "streams set up (partitions $PARTITIONS, replicas $REPLICAS)"

  # The first projector makes the ClickHouse schema; the edges read it.
  for name in "${PROJECTORS[@]}"; do
    role "$name" projector --worker-id "$name" "${CH_FLAGS[@]}"
  done
  [ "${#PROJECTORS[@]}" -gt 0 ] && wait_ready "${PROJECTORS[0]}"
  for name in "${FANOUTS[@]}"; do
    role "$name" fanout --worker-id "$name"
  done
  role presence presence
  # Web Push with a key of the cluster's own (made once, kept with the data),
  # so the notifier has a provider and both edges serve the same public key.
  local push_flags=()
  if has_notifier; then
    local vapid="$ROLES_DATA/vapid.pem"
    if [ ! -f "$vapid" ]; then
      (umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$vapid") || fail "could not make the Web Push key $vapid"
    fi
    push_flags=(--webpush-vapid-key "$vapid" --webpush-subject "mailto:cluster@localhost")
  fi
  local others=()
  if has_notifier; then
    role notifier notifier "${push_flags[@]}"
    others=(notifier)
  else
    say "this binary has no notifier role: skipped"
  fi
  for name in "${EDGES[@]}"; do
    role "$name" edge --dev "${CH_FLAGS[@]}" "${push_flags[@]}"
  done
  wait_ready "${PROJECTORS[@]}" "${FANOUTS[@]}" presence "${others[@]}" "${EDGES[@]}"

  say "ready"
  echo
  echo "  web and API:  http://$H:$(port 8081)/   http://$H:$(port 8082)/   (ws://…/v1/ws; sign in as any user)"
  echo "  NATS:         $NATS_URLS"
  if [ "$NO_CH" != 1 ]; then
    echo "  ClickHouse:   clickhouse-client --port ${CH_ADDR##*:} -d $CH_DB"
  fi
  local rd bin
  rd="$(rel "$ROLES_DATA")"
  bin="$(rel "$BIN")"
  echo "  dev secret:   $rd/dev-secret (both edges); a token: $bin token alice --dev --data $rd"
  echo "  chat:         $bin chat bob --dev --data $rd --url ws://$H:$(port 8082)"
  echo "                $bin chat alice --to bob --dev --data $rd --url ws://$H:$(port 8081)"
  echo "  logs:         $(rel "$LOGS")/    status: bash scripts/cluster.sh status    stop: bash scripts/cluster.sh down [--wipe]"
}

# all_names prints every process this cluster may have, start order.
all_names() {
  echo "${NODES[@]}" "${PROJECTORS[@]}" "${FANOUTS[@]}" presence
  [ -f "$RUN/notifier.pid" ] && echo notifier
  echo "${EDGES[@]}"
}

status() {
  local name p state rc=0
  for name in $(all_names); do
    p="$(pid "$name")"
    if [ -z "$p" ]; then
      state="not running"
      rc=3
    elif ready "$name"; then
      state="alive, ready"
    else
      state="alive, NOT ready"
      rc=3
    fi
    printf '%-12s %-8s %-22s http://%s:%s\n' "$name" "${p:--}" "$state" "$H" "$(http_port "$name")"
  done
  if [ "$NO_CH" != 1 ]; then
    bash scripts/clickhouse.sh status || rc=3
    if [ "$CH_SHARDS" = 2 ]; then bash scripts/clickhouse.sh status-shards || rc=3; fi
  fi
  return "$rc"
}

# stop_group NAME...: SIGTERM to each (SIGCONT first, for a paused one), then
# SIGKILL to those still alive after STOP_WAIT seconds.
stop_group() {
  local name p pids=() names=()
  for name in "$@"; do
    p="$(pid "$name")"
    if [ -n "$p" ]; then
      kill -CONT "$p" 2>/dev/null || true
      kill -TERM "$p" 2>/dev/null || true
      pids+=("$p")
      names+=("$name")
    else
      rm -f "$RUN/$name.pid"
    fi
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  local deadline=$((SECONDS + STOP_WAIT)) i alive
  while :; do
    alive=0
    for i in "${!pids[@]}"; do
      if kill -0 "${pids[$i]}" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 1 ] || break
    if ((SECONDS >= deadline)); then
      for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
          say "${names[$i]} still running after ${STOP_WAIT}s: SIGKILL"
          kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
      done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  for i in "${!names[@]}"; do
    rm -f "$RUN/${names[$i]}.pid"
    say "${names[$i]} stopped (pid ${pids[$i]})"
  done
}

drop_database() {
  local addr
  command -v clickhouse-client >/dev/null 2>&1 || return 0
  [ "$NO_CH" = 1 ] && return 0
  local addrs=("$CH_ADDR")
  [ "$CH_SHARDS" = 2 ] && addrs=("$SHARD1" "$SHARD2")
  for addr in "${addrs[@]}"; do
    if clickhouse-client --host "${addr%:*}" --port "${addr##*:}" -q "DROP DATABASE IF EXISTS $CH_DB" >/dev/null 2>&1; then
      say "dropped ClickHouse database $CH_DB on $addr"
    fi
  done
}

down() {
  local wipe=0
  case "${1:-}" in
    --wipe) wipe=1 ;;
    '') ;;
    *) fail "usage: $0 down [--wipe]" ;;
  esac
  # Edges first (they drain their clients), then the services, then NATS.
  stop_group "${EDGES[@]}"
  stop_group notifier presence "${FANOUTS[@]}" projector-1 projector-2
  stop_group "${NODES[@]}"
  [ "$wipe" = 1 ] && drop_database
  if [ -f "$RUN/clickhouse-shards.started" ]; then
    bash scripts/clickhouse.sh stop-shards
    rm -f "$RUN/clickhouse-shards.started"
  fi
  if [ -f "$RUN/clickhouse.started" ]; then
    bash scripts/clickhouse.sh stop
    rm -f "$RUN/clickhouse.started"
  fi
  if [ "$wipe" = 1 ]; then
    rm -rf "$DIR"
    say "removed $DIR"
  else
    say "data kept in $DIR ('down --wipe' removes it)"
  fi
}

# json_field FIELD: the first string or number value of FIELD in the JSON on stdin.
json_field() { grep -o "\"$1\":\"\?[^\",}]*" | head -n 1 | sed -e "s/^\"$1\":\"\?//"; }

# smoke: alice sends through edge 1 to bob, who long-polls edge 2; the message
# must reach bob, be in his history on edge 2, and (with ClickHouse) be
# projected. Needs a running cluster.
smoke() {
  local e1="http://$H:$(port 8081)" e2="http://$H:$(port 8082)"
  local alice="smoke-a-$RANDOM$RANDOM" bob="smoke-b-$RANDOM$RANDOM" text="cluster smoke $(date +%s%N)"
  local ta tb cursor ack conv out polled
  local e
  for e in "$e1" "$e2"; do
    curl -sf -o /dev/null "$e/" || fail "smoke: the web page $e/ does not answer"
  done
  # alice signs in on edge 2's web sign-in and sends through edge 1: both
  # edges share the development secret.
  ta="$(curl -sf -H 'Content-Type: application/json' -d "{\"user\":\"$alice\"}" "$e2/v1/dev/token" | json_field token)" ||
    fail "smoke: the web sign-in of edge 2 failed"
  [ -n "$ta" ] || fail "smoke: the web sign-in of edge 2 gave no token"
  tb="$("${child_env[@]}" "$BIN" token "$bob" --dev --data "$ROLES_DATA")"
  cursor="$(curl -sf -H "Authorization: Bearer $tb" "$e2/v1/poll" | json_field cursor)" ||
    fail "smoke: bob's first poll on edge 2 failed"
  polled="$(mktemp)"
  curl -sf --max-time 40 -H "Authorization: Bearer $tb" "$e2/v1/poll?cursor=$cursor&timeout=30" >"$polled" &
  local poller=$!
  ack="$(curl -sf --max-time 10 -H "Authorization: Bearer $ta" -H 'Content-Type: application/json' \
    -d "{\"id\":\"m1\",\"to\":\"$bob\",\"text\":\"$text\"}" "$e1/v1/messages")" ||
    { kill "$poller" 2>/dev/null; rm -f "$polled"; fail "smoke: the send through edge 1 failed"; }
  conv="$(echo "$ack" | json_field conv)"
  say "smoke: $alice -> $bob through edge 1 acked: $ack"
  wait "$poller" || { rm -f "$polled"; fail "smoke: bob's poll on edge 2 failed"; }
  out="$(cat "$polled")"
  rm -f "$polled"
  # A poll that ends empty is issued again from its cursor until the deadline
  # (the message is stored: it must come); the count of polls is printed.
  local polls=1 deadline=$((SECONDS + WAIT))
  while ! echo "$out" | grep -qF "$text"; do
    ((SECONDS < deadline)) || fail "smoke: bob's polls on edge 2 did not bring the message in ${WAIT}s: $out"
    cursor="$(echo "$out" | json_field cursor)"
    out="$(curl -sf --max-time 20 -H "Authorization: Bearer $tb" "$e2/v1/poll?cursor=$cursor&timeout=10")" ||
      fail "smoke: bob's poll on edge 2 failed"
    polls=$((polls + 1))
  done
  [ "$polls" = 1 ] || say "smoke: WARNING: the message came on poll $polls, not on the first one"
  say "smoke: delivered to $bob polling edge 2"
  out="$(curl -sf -H "Authorization: Bearer $tb" "$e2/v1/conversations/$conv/messages")"
  echo "$out" | grep -qF "$text" || fail "smoke: not in bob's history on edge 2: $out"
  say "smoke: in the history on edge 2"
  if [ "$NO_CH" != 1 ]; then
    local deadline=$((SECONDS + WAIT)) n=0
    while :; do
      n="$(clickhouse-client --host "${CH_ADDR%:*}" --port "${CH_ADDR##*:}" -d "$CH_DB" \
        -q "SELECT count() FROM messages_final WHERE conv = '$conv'" 2>/dev/null || echo 0)"
      [ "$n" -ge 1 ] 2>/dev/null && break
      ((SECONDS < deadline)) || fail "smoke: the message is not in ClickHouse ($CH_DB.messages_final) after ${WAIT}s"
      sleep 0.5
    done
    say "smoke: projected into ClickHouse ($CH_DB.messages_final: $n row)"
  fi
  say "smoke: ok"
}

case "${1:-}" in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  smoke) smoke ;;
  *)
    echo "usage: $0 up|down [--wipe]|status|smoke" >&2
    exit 2
    ;;
esac
