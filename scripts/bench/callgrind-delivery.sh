#!/usr/bin/env bash
# scripts/bench/callgrind-delivery.sh LABEL BROKER_BIN: instructions the broker executes per
# delivered message on the one-message-per-write path, counted by valgrind's callgrind (an
# instruction count is repeatable on a noisy machine where CPU time is not). CONNS receivers
# (WebSockets, JSON), RATE broadcasts/s of PAYLOAD bytes for SECS s through the REST API
# (`switchboard-loadtest s4-broadcast`); counting starts once every receiver is connected and
# stops when the generator ends, so it covers the broadcasts' REST requests, the fan-out and the
# writes (and the keep-alive pings of that window), divided by the deliveries counted in
# /metrics over the same window. One line per run goes to target/bench-callgrind/results.txt.
#
#   scripts/bench/callgrind-delivery.sh new target/release/switchboard
#
# Environment: CONNS [100], RATE [10], SECS [20], PAYLOAD [100].
set -euo pipefail
cd "$(dirname "$0")/../.."
label=$1; bin=$(realpath "$2")
CONNS=${CONNS:-100}; RATE=${RATE:-10}; SECS=${SECS:-20}; PAYLOAD=${PAYLOAD:-100}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
key=callgrind-bench-key-$$-0123456789abcdef0123456789
port=18474
out=target/bench-callgrind/$label
mkdir -p "$out"
rm -f "$out"/callgrind.out.*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out.%p" \
  "$bin" serve --listen "127.0.0.1:$port" --access-key "$key" --mode serverless \
  >"$out/broker.log" 2>&1 &
vg=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
counter() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
target/release/switchboard-loadtest --url "http://127.0.0.1:$port" --key "$key" --quiet \
  --json-out "$out/s4.json" --protocol json --payload-bytes "$PAYLOAD" --connections "$CONNS" \
  --duration "$SECS" --rate "$RATE" s4-broadcast --senders 1 >"$out/s4.txt" 2>&1 &
gen=$!
for _ in $(seq 1200); do
  n=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^switchboard_connections / {s+=$NF} END {print s+0}')
  [[ ${n:-0} -ge $CONNS ]] && break
  sleep 0.1
done
d0=$(counter switchboard_messages_delivered_total); w0=$(counter switchboard_socket_writes_total)
callgrind_control -i on "$vg" >/dev/null
wait $gen
callgrind_control -i off "$vg" >/dev/null
d1=$(counter switchboard_messages_delivered_total); w1=$(counter switchboard_socket_writes_total)
callgrind_control -d "$vg" >/dev/null
kill -INT "$vg" 2>/dev/null || true
wait "$vg" 2>/dev/null || true
ir=0
for f in "$out"/callgrind.out.*; do
  n=$(awk '/^totals:/ {print $2; exit}' "$f")
  ir=$((ir + ${n:-0}))
done
python3 -c "
d=$d1-$d0; w=$w1-$w0; ir=$ir
print('$label conns=$CONNS rate=$RATE secs=$SECS deliveries=%d writes=%d instructions=%d per_delivery=%.0f' % (d, w, ir, ir/max(d,1)))" \
  | tee -a target/bench-callgrind/results.txt
