#!/usr/bin/env bash
# scripts/bench/owned-socket.sh OLD_BIN NEW_BIN: two Switchboard builds and nginx + Nchan side by
# side, interleaved in one run (the owned-socket work: idle memory and the one-message-per-write
# path). For each of ROUNDS rounds, each system in turn (the order rotated every round), each
# server started fresh for each measurement:
#   1. idle: hold HOLD_CONNS WebSockets for HOLD_SECS; the server's RSS per connection
#      (Switchboard: `switchboard-loadtest s1-hold`; Nchan: `switchboard-peers nchan-hold`).
#   2. one message per write: BCAST_CONNS subscribers, RATE broadcasts/s of PAYLOAD bytes for
#      BCAST_SECS; the server's CPU per delivery over the publishing window and the delivery
#      latency p50/p99, with the same receivers for both (`switchboard-peers
#      switchboard-broadcast` / `nchan-broadcast --rate`: plain WebSocket subscribers, latency
#      from the µs timestamp in each payload, CPU from /proc over the publishing window and the
#      drain; "reach" is the time one broadcast took to reach every subscriber, median and p99
#      over the broadcasts).
# Then, for the two Switchboard builds only, SSE and long-polling idle memory at SSE_CONNS.
# One line per measurement goes to RESULTS/results.txt; every JSON report stays in RESULTS.
#
#   scripts/bench/owned-socket.sh /path/to/old/switchboard target/release/switchboard
#
# Environment (defaults in brackets): ROUNDS [2], HOLD_CONNS [19000], HOLD_SECS [10],
# BCAST_CONNS [10000], RATE [10], BCAST_SECS [15], PAYLOAD [100], SSE_CONNS [5000],
# SYSTEMS ["old new nchan"], PARTS ["idle bcast fallback"], RESULTS [target/bench-owned/<UTC time>].
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OLD=$(realpath "$1"); NEW=$(realpath "$2")
ROUNDS=${ROUNDS:-2}
HOLD_CONNS=${HOLD_CONNS:-19000}
HOLD_SECS=${HOLD_SECS:-10}
BCAST_CONNS=${BCAST_CONNS:-10000}
RATE=${RATE:-10}
BCAST_SECS=${BCAST_SECS:-15}
PAYLOAD=${PAYLOAD:-100}
SSE_CONNS=${SSE_CONNS:-5000}
SYSTEMS=${SYSTEMS:-"old new nchan"}
PARTS=${PARTS:-"idle bcast fallback"}
RESULTS=${RESULTS:-$ROOT/target/bench-owned/$(date -u +%Y%m%dT%H%M%SZ)}
LT=$ROOT/target/release/switchboard-loadtest
PEERS=$ROOT/target/release/switchboard-peers
KEY=owned-bench-key-$$-0123456789abcdef0123456789
PORT=18473
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

if [[ " $SYSTEMS " == *" nchan "* ]] && { ! command -v nginx >/dev/null || [[ ! -f $NCHAN_MODULE ]]; }; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
fi
for b in "$LT" "$PEERS" "$OLD" "$NEW"; do
  [[ -x $b ]] || { echo "missing $b (cargo build --release -p switchboard -p switchboard-loadtest)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$RESULTS/logs"
out=$RESULTS/results.txt
log() { printf '[owned %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

PID=
stop() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  PID=
}
trap stop EXIT

start() { # system tag
  case $1 in
    old|new)
      local bin=$OLD; [[ $1 == new ]] && bin=$NEW
      "$bin" serve --listen "127.0.0.1:$PORT" --mode serverless --access-key "$KEY" \
        >"$RESULTS/logs/$2.log" 2>&1 &
      PID=$!
      ;;
    nchan)
      local prefix=$RESULTS/nchan-run
      rm -rf "$prefix" && mkdir -p "$prefix"
      sed "s/127\.0\.0\.1:8081/127.0.0.1:$PORT/" bench/peers/nginx-nchan.conf >"$prefix/nginx.conf"
      nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;' \
        >"$RESULTS/logs/$2.log" 2>&1 &
      PID=$!
      ;;
  esac
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  if [[ $1 == nchan ]]; then
    for _ in $(seq 50); do
      [[ $(cat /proc/"$PID"/task/*/children 2>/dev/null | wc -w) -ge 2 ]] && break
      sleep 0.1
    done
  fi
  sleep 0.5
}

hold() { # system round transport conns
  local sys=$1 r=$2 transport=$3 conns=$4 tag=$1-hold-$3-$2
  start "$sys" "$tag"
  local j=$RESULTS/$tag.json
  if [[ $sys == nchan ]]; then
    "$PEERS" nchan-hold --url "http://127.0.0.1:$PORT" --connections "$conns" \
      --duration "$HOLD_SECS" --payload-bytes "$PAYLOAD" --server-children-of "$PID" --quiet \
      --json-out "$j" >/dev/null
  else
    "$LT" --url "http://127.0.0.1:$PORT" --key "$KEY" --connections "$conns" --duration "$HOLD_SECS" \
      --workers 2 --parallel 64 --quiet --json-out "$j" s1-hold --transport "$transport" \
      --server-pid "$PID" >/dev/null
  fi
  stop
  python3 - "$j" "$sys" "$r" "$transport" <<'EOF' | tee -a "$out"
import json, sys
j = json.load(open(sys.argv[1]))
x = j.get("extra", {})
per = x.get("server_rss_bytes_per_connection", float("nan")) / 1024
held = x.get("still_connected_at_end", j.get("connected"))
print(f"idle {sys.argv[2]} round={sys.argv[3]} transport={sys.argv[4]} held={held} rss_per_conn_kib={per:.2f}")
EOF
}

broadcast() { # system round
  local sys=$1 r=$2 tag=$1-bcast-$2
  start "$sys" "$tag"
  local j=$RESULTS/$tag.json
  # The same receivers for every system (switchboard-peers' plain WebSocket subscribers; for
  # Switchboard they speak the JSON hub protocol), so that the servers alone are compared.
  if [[ $sys == nchan ]]; then
    "$PEERS" nchan-broadcast --url "http://127.0.0.1:$PORT" --connections "$BCAST_CONNS" \
      --duration "$BCAST_SECS" --payload-bytes "$PAYLOAD" --rate "$RATE" \
      --server-children-of "$PID" --quiet --json-out "$j" >/dev/null
  else
    "$PEERS" switchboard-broadcast --url "http://127.0.0.1:$PORT" --key "$KEY" \
      --connections "$BCAST_CONNS" --duration "$BCAST_SECS" --payload-bytes "$PAYLOAD" \
      --rate "$RATE" --server-pid "$PID" --quiet --json-out "$j" >/dev/null
  fi
  stop
  python3 - "$j" "$sys" "$r" <<'EOF' | tee -a "$out"
import json, sys
s = json.load(open(sys.argv[1]))
l = s.get("latency") or {}
x = s.get("extra", {})
print("bcast %s round=%s received=%s lost=%s us/delivery=%.2f p50=%.1fms p99=%.1fms reach_p50=%.1fms reach_p99=%.1fms" % (
    sys.argv[2], sys.argv[3], s.get("received"), s.get("lost"),
    x.get("server_cpu_us_per_delivery", float("nan")),
    l.get("p50_us", 0) / 1000, l.get("p99_us", 0) / 1000,
    x.get("broadcast_reach_p50_us", 0) / 1000, x.get("broadcast_reach_p99_us", 0) / 1000))
EOF
}

log "results in $RESULTS"
read -r -a order <<<"$SYSTEMS"
part() { [[ " $PARTS " == *" $1 "* ]]; }
for r in $(seq "$ROUNDS"); do
  if part idle; then
    for s in "${order[@]}"; do log "round $r: $s idle"; hold "$s" "$r" websockets "$HOLD_CONNS"; done
  fi
  if part bcast; then
    for s in "${order[@]}"; do log "round $r: $s broadcast"; broadcast "$s" "$r"; done
  fi
  order=("${order[@]:1}" "${order[0]}")
done
for r in $(seq "$ROUNDS"); do
  part fallback || break
  for s in old new; do
    [[ " $SYSTEMS " == *" $s "* ]] || continue
    for t in sse long-polling; do log "round $r: $s idle $t"; hold "$s" "$r" "$t" "$SSE_CONNS"; done
  done
done
log "done: $out"
