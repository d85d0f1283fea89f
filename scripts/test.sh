#!/usr/bin/env bash
# The test command (README, .ci/run): Rust unit and integration tests, then the end-to-end
# suite that drives the broker with the official JavaScript SignalR clients under Node (and the
# chat example's page in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets
cargo test --workspace

# The chat example serves its page the official browser client from its own npm install
# (examples/chat/package-lock.json); the end-to-end suite opens that page offline.
npm ci --no-audit --no-fund --prefix examples/chat

cd tests/e2e
npm ci --no-audit --no-fund
SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" npm test
