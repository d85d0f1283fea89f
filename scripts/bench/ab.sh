#!/usr/bin/env bash
# scripts/bench/ab.sh OLD_BIN NEW_BIN: the hot-path scenarios of two broker builds, interleaved
# in one run with this tree's load generator, for a change on a hot path (before and after).
# For each of ROUNDS rounds, each build in turn (the order alternating from round to round):
#   S3   Default mode, the echo hub server (target/release/examples/echo), 1,000 clients closed
#        loop, JSON 100 B, DUR s: round trips/s and p99;
#   S4b  10,000 receivers, rising broadcast steps (scripts/bench/s4b-compare.sh): the highest
#        passing step and the broker's CPU per delivery;
#   S6   REST send-to-user, 64 keep-alive clients, 1,000 users, DUR s: requests/s and p99.
# One line per run goes to RESULTS/results.txt.
#
#   scripts/bench/ab.sh /path/to/old/switchboard target/release/switchboard
#
# Environment: ROUNDS [2], DUR [20], SCENARIOS ["s3 s4b s6"], RESULTS [target/bench-ab/<UTC time>].
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OLD=$(realpath "$1"); NEW=$(realpath "$2")
ROUNDS=${ROUNDS:-2}; DUR=${DUR:-20}
RESULTS=${RESULTS:-$ROOT/target/bench-ab/$(date -u +%Y%m%dT%H%M%SZ)}
LT=$ROOT/target/release/switchboard-loadtest
ECHO=$ROOT/target/release/examples/echo
for b in "$LT" "$ECHO" "$OLD" "$NEW"; do
  [[ -x $b ]] || { echo "missing $b (cargo build --release --workspace --examples)" >&2; exit 1; }
done
KEY=ab-bench-key-$$-0123456789abcdef0123456789
PORT=18475; ECHO_PORT=18476
mkdir -p "$RESULTS"
out=$RESULTS/results.txt
log() { printf '[ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

broker() { # bin tag mode
  "$1" serve --listen "127.0.0.1:$PORT" --access-key "$KEY" --mode "$3" >"$RESULTS/$2.log" 2>&1 &
  BPID=$!; PIDS+=("$BPID")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the broker did not start ($2)" >&2; exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
gen() { # tag args...
  local tag=$1; shift
  "$LT" --url "http://127.0.0.1:$PORT" --key "$KEY" --quiet --json-out "$RESULTS/$tag.json" "$@" \
    >"$RESULTS/$tag.txt" 2>&1 || log "$tag FAILED: $(tail -2 "$RESULTS/$tag.txt")"
}
report() { # tag metric label
  python3 - "$RESULTS/$1.json" "$2" "$3" <<'EOF' | tee -a "$out"
import json, sys
j = json.load(open(sys.argv[1])); x = j.get("extra", {}); l = j.get("latency") or {}
print("%s %s=%.0f p50=%.2fms p99=%.2fms lost=%s errors=%s" % (sys.argv[3], sys.argv[2],
      x.get(sys.argv[2], float("nan")), l.get("p50_us", 0) / 1000, l.get("p99_us", 0) / 1000,
      j.get("lost"), j.get("errors")))
EOF
}

s3() { # label bin round
  broker "$2" "s3-$1-$3" default
  "$ECHO" --listen "127.0.0.1:$ECHO_PORT" --connection-string \
    "Endpoint=http://127.0.0.1;Port=$PORT;AccessKey=$KEY;Version=1.0;" >"$RESULTS/echo-$1-$3.log" 2>&1 &
  local echo_pid=$!; PIDS+=("$echo_pid")
  for _ in $(seq 100); do grep -q "hub server connected" "$RESULTS/echo-$1-$3.log" && break; sleep 0.1; done
  gen "s3-$1-$3" --hub echo --protocol json --payload-bytes 100 --connections 1000 --duration "$DUR" s3-echo
  stop "$echo_pid"; stop "$BPID"
  report "s3-$1-$3" round_trips_per_second "S3 $1 round=$3"
}
s6() { # label bin round
  broker "$2" "s6-$1-$3" serverless
  gen "s6-$1-$3" --protocol json --payload-bytes 100 --connections 1000 --duration "$DUR" \
    s6-rest-user --concurrency 64
  stop "$BPID"
  report "s6-$1-$3" requests_per_second "S6 $1 round=$3"
}
s4b() { # label bin round
  scripts/bench/s4b-compare.sh "$1-$3" "$2"
  echo "S4b $(tail -1 target/bench-s4b/results.txt)" | tee -a "$out"
}

log "results in $RESULTS"
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then order=("old $OLD" "new $NEW"); else order=("new $NEW" "old $OLD"); fi
  for scenario in ${SCENARIOS:-s3 s4b s6}; do
    for entry in "${order[@]}"; do
      read -r label bin <<<"$entry"
      log "round $r: $scenario $label"
      $scenario "$label" "$bin" "$r"
    done
  done
done
log "done: $out"
