#!/usr/bin/env bash
# The dependency policy (deny.toml) checked by cargo-deny: licenses, bans (one crypto backend,
# aws-lc-rs; duplicate versions are warnings), sources (crates.io only). Then the RustSec
# advisories, when the advisory database can be fetched; where it cannot, that check is skipped
# with a note. .ci/run calls this; developers can run it too. Any failing check fails it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version deny.toml is written for; installed from crates.io when cargo-deny is missing.
CARGO_DENY_VERSION=0.20.2
ADVISORY_DB=https://github.com/rustsec/advisory-db

if ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi

cargo deny check licenses bans sources

if timeout 20 git ls-remote "$ADVISORY_DB" HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "advisories skipped: the advisory database (github.com/rustsec/advisory-db) is not reachable from this machine"
fi
