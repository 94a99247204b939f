#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: go test -fuzz takes one target
# of one package at a time. FUZZTIME (default 15s) is each target's time,
# FUZZ_PARALLEL (default 1) its workers; FUZZ_ONLY, a regexp, picks targets.
# A crash is written under the package's testdata/fuzz/<Target>/: commit it
# with the fix, and `go test` replays it as a regression test from then on.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-15s}"
FUZZ_PARALLEL="${FUZZ_PARALLEL:-1}"
FUZZ_ONLY="${FUZZ_ONLY:-.}"

# package target: every decoder of client input.
targets=(
	"./client/proto FuzzValidID"
	"./services/event FuzzParseCursor"
	"./edge/auth FuzzVerify"
	"./edge/auth FuzzVerifySigned"
	"./edge FuzzDecodeFrame"
	"./edge FuzzJSONBody"
	"./edge FuzzPageBounds"
	"./edge FuzzAPIBody"
	"./edge FuzzAPIQuery"
	"./edge FuzzWSFrame"
)

failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	[[ "$name" =~ $FUZZ_ONLY ]] || continue
	echo "== $name ($pkg, $FUZZTIME)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZ_PARALLEL" "$pkg"; then
		failed+=("$name")
	fi
done

if ((${#failed[@]})); then
	echo "fuzz: failed: ${failed[*]} (the crashing inputs are under testdata/fuzz/)" >&2
	exit 1
fi
echo "fuzz: every target ran $FUZZTIME without a failure"
