#!/usr/bin/env bash
# Installs what the platform and its tests need and is missing: Go modules,
# and `just` (from the npm registry) for the recipes. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "deps: Go is required (https://go.dev/dl)"; exit 1; }
go mod download
if ! command -v just >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  npm install -g rust-just >/dev/null 2>&1 || echo "deps: could not install just (optional)"
fi
