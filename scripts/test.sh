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
# Headless Chromium for the web client's browser tests (web/browser_test.go,
# which fail without it unless MESSENGER_NO_BROWSER=1).
if [ "${MESSENGER_NO_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "== chromium"
  if [ "$(id -u)" -eq 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  else sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; fi
fi
echo "== clickhouse"
bash scripts/clickhouse.sh start # left running; the tests use it
export MESSENGER_CLICKHOUSE="${MESSENGER_CLICKHOUSE:-127.0.0.1:${CLICKHOUSE_TCP_PORT:-9000}}"
# Two more servers, the shards of the sharded tests (infra/clickhouse
# TestSharded*, services/history TestShardedClickHousePages); left running.
bash scripts/clickhouse.sh start-shards
# Not MESSENGER_CLICKHOUSE_SHARDS: that is the --clickhouse-shards flag of every
# messenger process the e2e tests start, which would then shard their schema.
export MESSENGER_TEST_CLICKHOUSE_SHARDS="${MESSENGER_TEST_CLICKHOUSE_SHARDS:-127.0.0.1:9101,127.0.0.1:9102}"
echo "== go vet"
go vet ./...
echo "== go test"
# The test binaries are compiled first, in parallel (-exec true: built, not
# run); then the packages run one at a time (-p 1): the heavy ones (edge, the
# browser in web, the e2e processes of cmd/messenger) each want both cores of
# a CI machine, and run at once they slow each other down several times over.
# About 3 minutes in all, as with the packages run two at a time.
go test -race -count=1 -exec true ./... >/dev/null
go test -race -count=1 -p 1 -timeout 14m ./... 2>&1 | tee /tmp/messenger-test.log
