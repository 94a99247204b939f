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
echo "messenger: starting on http://${MESSENGER_HTTP} (data in ${MESSENGER_DATA})"
echo "messenger: mint a token with: bin/messenger token alice --dev"
exec bin/messenger all --dev "$@"
