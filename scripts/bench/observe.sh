#!/usr/bin/env bash
# scripts/bench/observe.sh BROKER_BIN: what watching costs. S3 and S4b of one broker build, each
# run twice per round in one run — "quiet" (nobody watching; the default log levels) and
# "watched": the web console open in headless Chromium on its overview (polling it every
# second) plus a live-trace viewer of every category (`switchboard trace --json`, which turns
# on message tracing: one event per message) — in alternating order.
#   S3   Default mode, the echo hub server, 1,000 clients closed loop, JSON 100 B, DUR s;
#   S4b  10,000 receivers, rising broadcast steps (scripts/bench/s4b-compare.sh).
# Needs target/release/{switchboard-loadtest,examples/echo} (cargo build --release --workspace
# --bins --examples), Chromium (/usr/bin/chromium) and tests/e2e's node_modules (npm ci there).
# One line per run goes to RESULTS/results.txt.
#
# Environment: ROUNDS [2], DUR [20], RESULTS [target/bench-observe/<UTC time>].
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$(realpath "$1")
ROUNDS=${ROUNDS:-2}; DUR=${DUR:-20}
RESULTS=${RESULTS:-$ROOT/target/bench-observe/$(date -u +%Y%m%dT%H%M%SZ)}
LT=$ROOT/target/release/switchboard-loadtest
ECHO=$ROOT/target/release/examples/echo
for b in "$LT" "$ECHO" "$BIN" /usr/bin/chromium; do
  [[ -x $b ]] || { echo "missing $b (cargo build --release --workspace --bins --examples; apt-get install chromium)" >&2; exit 1; }
done
[[ -d tests/e2e/node_modules/playwright-core ]] || { echo "missing playwright-core: (cd tests/e2e && npm ci)" >&2; exit 1; }
KEY=observe-bench-key-$$-0123456789abcdef0123456789
PORT=18477; ECHO_PORT=18478
mkdir -p "$RESULTS"
out=$RESULTS/results.txt
log() { printf '[observe %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The watchers: the console in Chromium, and a trace viewer of everything.
export OBSERVE_ATTACH="node '$ROOT/scripts/bench/console-viewer.mjs' http://127.0.0.1:\$PORT \$KEY & \
'$BIN' trace --json --connection-string \"Endpoint=http://127.0.0.1;Port=\$PORT;AccessKey=\$KEY;Version=1.0;\" > /dev/null & wait"

attach() { # port
  [[ $1 == watched ]] || return 0
  PORT=$PORT KEY=$KEY setsid bash -c "$OBSERVE_ATTACH" >"$RESULTS/attach-$2.log" 2>&1 &
  APID=$!; PIDS+=("$APID")
  sleep 3
}
detach() { [[ -n ${APID:-} ]] && { kill -- "-$APID" 2>/dev/null || true; wait "$APID" 2>/dev/null || true; APID=; }; return 0; }

s3() { # label round
  "$BIN" serve --listen "127.0.0.1:$PORT" --access-key "$KEY" --mode default >"$RESULTS/s3-$1-$2.log" 2>&1 &
  local bpid=$!; PIDS+=("$bpid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  "$ECHO" --listen "127.0.0.1:$ECHO_PORT" --connection-string \
    "Endpoint=http://127.0.0.1;Port=$PORT;AccessKey=$KEY;Version=1.0;" >"$RESULTS/echo-$1-$2.log" 2>&1 &
  local echo_pid=$!; PIDS+=("$echo_pid")
  for _ in $(seq 100); do grep -q "hub server connected" "$RESULTS/echo-$1-$2.log" && break; sleep 0.1; done
  attach "$1" "s3-$2"
  "$LT" --url "http://127.0.0.1:$PORT" --key "$KEY" --quiet --json-out "$RESULTS/s3-$1-$2.json" \
    --hub echo --protocol json --payload-bytes 100 --connections 1000 --duration "$DUR" s3-echo \
    >"$RESULTS/s3-$1-$2.txt" 2>&1 || log "S3 $1 FAILED: $(tail -2 "$RESULTS/s3-$1-$2.txt")"
  local ticks; ticks=$(awk '{print $14 + $15}' "/proc/$bpid/stat")
  detach
  kill "$echo_pid" "$bpid" 2>/dev/null || true; wait "$echo_pid" "$bpid" 2>/dev/null || true
  python3 - "$RESULTS/s3-$1-$2.json" "$1" "$2" "$ticks" <<'PY' | tee -a "$out"
import json, os, sys
j = json.load(open(sys.argv[1])); l = j.get("latency") or {}
rt = j.get("extra", {}).get("round_trips_per_second", float("nan"))
cpu = int(sys.argv[4]) / os.sysconf("SC_CLK_TCK")
print("S3 %s round=%s round_trips_per_second=%.0f p50=%.2fms p99=%.2fms broker_cpu_s=%.1f lost=%s errors=%s" % (
    sys.argv[2], sys.argv[3], rt, l.get("p50_us", 0) / 1000, l.get("p99_us", 0) / 1000, cpu, j.get("lost"), j.get("errors")))
PY
}
s4b() { # label round
  if [[ $1 == watched ]]; then
    ATTACH=$OBSERVE_ATTACH scripts/bench/s4b-compare.sh "observe-$1-$2" "$BIN"
  else
    scripts/bench/s4b-compare.sh "observe-$1-$2" "$BIN"
  fi
  echo "S4b $(tail -1 target/bench-s4b/results.txt)" | tee -a "$out"
}

log "results in $RESULTS"
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then order=(quiet watched); else order=(watched quiet); fi
  for scenario in s3 s4b; do
    for label in "${order[@]}"; do
      log "round $r: $scenario $label"
      $scenario "$label" "$r"
    done
  done
done
log "done: $out"
