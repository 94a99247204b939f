#!/usr/bin/env bash
# The test command: installs what is missing, then vets and runs every test
# against real servers (an embedded nats-server with JetStream on disk,
# started by the tests themselves; ClickHouse, started here by
# scripts/clickhouse.sh and left running, at MESSENGER_CLICKHOUSE; the
# end-to-end tests build and run the messenger binary as separate
# processes). Bounded to 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== clickhouse"
bash scripts/clickhouse.sh start # left running; the tests use it
export MESSENGER_CLICKHOUSE="${MESSENGER_CLICKHOUSE:-127.0.0.1:${CLICKHOUSE_TCP_PORT:-9000}}"
echo "== go vet"
go vet ./...
echo "== go test"
go test -race -count=1 -timeout 14m ./... 2>&1 | tee /tmp/messenger-test.log
