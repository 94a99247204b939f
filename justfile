# Recipes; each is also a plain script or go command.

# install what is missing, start ClickHouse, build, run every role in one process (dev mode)
start:
    bash scripts/start.sh

# vet and run the whole test suite against real servers (what CI runs)
test:
    bash scripts/test.sh

# build the binaries into bin/
build:
    go build -o bin/messenger ./cmd/messenger
    go build -o bin/bench ./cmd/bench

# print a development token for a user
token user:
    go run ./cmd/messenger token {{user}} --dev

# every fuzz target for FUZZTIME each (default 15s, one worker): frames, bodies, cursors, ids, tokens, queries
fuzz:
    bash scripts/fuzz.sh

# the load benchmark (slow tier): starts its own platform; e.g. just bench idle direct
bench *scenarios:
    go run ./cmd/bench {{scenarios}}

# the in-process benchmarks: cost per message, history, groups, hot paths
bench-go:
    go test -run '^$' -bench . -benchtime 1x ./edge/

# ClickHouse for analysts: start, stop, status
clickhouse verb="status":
    bash scripts/clickhouse.sh {{verb}}

# the chaos suite (slow tier, not CI, ~6-10 min): a 3-node cluster on loopback, one fault per phase, a Jepsen-style check (docs/CHAOS.md); e.g. just chaos --faults node-pause
chaos *args:
    go build -o bin/messenger ./cmd/messenger
    go run ./cmd/chaos {{args}}

# a cluster on one machine (scripts/cluster.sh): 3 clustered NATS nodes, edges on :8081 and :8082, 2 fan-outs, presence, 2 projectors, ClickHouse; verbs up, status, smoke, down [--wipe]; e.g. just cluster down --wipe
cluster verb="up" *args:
    bash scripts/cluster.sh {{verb}} {{args}}

# stop the cluster of `just cluster` (--wipe also removes its data)
cluster-down *args:
    bash scripts/cluster.sh down {{args}}
