#!/usr/bin/env bash
# The test command (README, .ci/run): Rust unit and integration tests, then the end-to-end
# suite that drives the broker with the official JavaScript SignalR clients under Node.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets
cargo test --workspace

cd tests/e2e
npm ci --no-audit --no-fund
SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" npm test
