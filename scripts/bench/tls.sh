#!/usr/bin/env bash
# scripts/bench/tls.sh BROKER_BIN: what TLS costs, plain and TLS side by side in one run of one
# build with this tree's load generator (target/release/switchboard-loadtest):
#   idle  S1: HOLD_CONNS WebSockets held HOLD_SECS (two generator processes): the broker's RSS
#         per connection;
#   S4b   10,000 receivers, rising broadcast steps (JSON, 100 B, 8-second steps, 16 REST
#         senders): the highest passing step and the broker's CPU per delivery.
# The certificate comes from a CA minted with openssl for the run (ECDSA P-256); the generator
# trusts it with --ca-file. One line per measurement goes to RESULTS/results.txt.
#
#   scripts/bench/tls.sh target/release/switchboard
#
# Environment: ROUNDS [1], HOLD_CONNS [10000], HOLD_SECS [20], RESULTS [target/bench-tls/<UTC time>].
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
ROUNDS=${ROUNDS:-1}; HOLD_CONNS=${HOLD_CONNS:-10000}; HOLD_SECS=${HOLD_SECS:-20}
RESULTS=${RESULTS:-$PWD/target/bench-tls/$(date -u +%Y%m%dT%H%M%SZ)}
LT=$PWD/target/release/switchboard-loadtest
[[ -x $LT ]] || { echo "missing $LT (cargo build --release --workspace)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing (apt-get install openssl)" >&2; exit 1; }
KEY=tls-bench-key-$$-0123456789abcdef0123456789
PORT=18477
mkdir -p "$RESULTS/certs"
out=$RESULTS/results.txt
log() { printf '[tls %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The run's CA and the broker's certificate.
(
  cd "$RESULTS/certs"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 1 -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null
  openssl req "${ec[@]}" -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile server.ext -out server.pem 2>/dev/null
)
CERTS=$RESULTS/certs

PID=
stop() { [[ -n $PID ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; PID=; }
trap stop EXIT

start() { # plain|tls tag
  local extra=()
  [[ $1 == tls ]] && extra=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key")
  "$BIN" serve --listen "127.0.0.1:$PORT" --mode serverless --access-key "$KEY" "${extra[@]}" \
    >"$RESULTS/$2.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    curl -sf --cacert "$CERTS/ca.pem" "$(url "$1")/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 0.5
}
url() { if [[ $1 == tls ]]; then echo "https://127.0.0.1:$PORT"; else echo "http://127.0.0.1:$PORT"; fi; }

idle() { # plain|tls round
  local tag=idle-$1-$2 j=$RESULTS/idle-$1-$2.json
  start "$1" "$tag"
  "$LT" --url "$(url "$1")" --ca-file "$CERTS/ca.pem" --key "$KEY" --connections "$HOLD_CONNS" \
    --duration "$HOLD_SECS" --workers 2 --parallel 64 --quiet --json-out "$j" s1-hold \
    --server-pid "$PID" >/dev/null
  stop
  python3 - "$j" "$1" "$2" <<'PY' | tee -a "$out"
import json, sys
j = json.load(open(sys.argv[1])); x = j.get("extra", {})
per = x.get("server_rss_bytes_per_connection", float("nan")) / 1024
held = x.get("still_connected_at_end", j.get("connected"))
print(f"idle {sys.argv[2]} round={sys.argv[3]} held={held} rss_per_conn_kib={per:.2f}")
PY
}

s4b() { # plain|tls round
  local tag=s4b-$1-$2 j=$RESULTS/s4b-$1-$2.json
  start "$1" "$tag"
  "$LT" --url "$(url "$1")" --ca-file "$CERTS/ca.pem" --key "$KEY" --quiet --json-out "$j" \
    --protocol json --payload-bytes 100 --connections 10000 --duration 8 \
    s4b-max --senders 16 --start-rate 5 --factor 1.5 --max-steps 15 >"$RESULTS/$tag.txt" 2>&1
  local ticks; ticks=$(awk '{print $14 + $15}' /proc/"$PID"/stat)
  stop
  python3 - "$j" "$1" "$2" "$ticks" <<'PY' | tee -a "$out"
import json, os, sys
j = json.load(open(sys.argv[1])); steps = j["extra"]["steps"]
delivered = sum(x.get("received", 0) for x in steps) or j.get("received", 0)
cpu = int(sys.argv[4]) / os.sysconf("SC_CLK_TCK")
per = cpu * 1e6 / delivered if delivered else float("nan")
print(f"s4b {sys.argv[2]} round={sys.argv[3]} max_deliveries_per_s={round(j['extra']['max_deliveries_per_second'])} "
      f"cpu_s={cpu:.1f} us_per_delivery={per:.2f} p99_ms_by_step={[(x['step'], x['latency']['p99_us'] // 1000) for x in steps]}")
PY
}

for r in $(seq "$ROUNDS"); do
  order=(plain tls); (( r % 2 == 0 )) && order=(tls plain)
  for sys in "${order[@]}"; do log "idle $sys round $r"; idle "$sys" "$r"; done
  for sys in "${order[@]}"; do log "s4b $sys round $r"; s4b "$sys" "$r"; done
done
log "results in $out"
