#!/usr/bin/env bash
# The one command to run the platform on a fresh machine: installs what is
# missing, starts ClickHouse (scripts/clickhouse.sh; left running), builds the
# binary and runs every role in one process in development mode (a secret
# kept under ./data, printed at start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# ClickHouse (history and analytics) first: a background server under ./.clickhouse.
bash scripts/clickhouse.sh start
export MESSENGER_CLICKHOUSE="${MESSENGER_CLICKHOUSE:-127.0.0.1:${CLICKHOUSE_TCP_PORT:-9000}}"
mkdir -p bin
go build -o bin/messenger ./cmd/messenger
export MESSENGER_DATA="${MESSENGER_DATA:-./data}"
export MESSENGER_HTTP="${MESSENGER_HTTP:-127.0.0.1:8080}"
echo "messenger: starting (data in ${MESSENGER_DATA}, logs in ${MESSENGER_DATA}/messenger.log)"
mkdir -p "$MESSENGER_DATA"
# The log goes to the file; stdout (the development secret, printed once and never
# logged) stays on the terminal.
bin/messenger all --dev "$@" 2>>"$MESSENGER_DATA/messenger.log" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"' INT TERM
for _ in $(seq 1 120); do
  if curl -sf "http://${MESSENGER_HTTP}/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "messenger: it stopped; the end of its log:"; tail -20 "$MESSENGER_DATA/messenger.log"; exit 1
  fi
  sleep 0.5
done
echo "messenger: ready. Terminal chat: bin/messenger chat alice --to bob --dev"
echo "messenger: Ctrl-C stops it."
echo
echo "Open http://${MESSENGER_HTTP}/ and sign in as any user."
wait "$pid"
