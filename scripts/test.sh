#!/usr/bin/env bash
# The test command: installs what is missing, then vets and runs every test
# against real servers (an embedded nats-server with JetStream on disk,
# started by the tests themselves; the end-to-end tests build and run the
# messenger binary as separate processes). Bounded to 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== go vet"
go vet ./...
echo "== go test"
go test -race -count=1 -timeout 14m ./... 2>&1 | tee /tmp/messenger-test.log
