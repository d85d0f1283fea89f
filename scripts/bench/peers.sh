#!/usr/bin/env bash
# Switchboard and its peers side by side, on this machine, in one session (docs/performance.md:
# peers, ground rules): installs what is missing (nginx + Nchan from Debian, socket.io from the
# committed lockfile), builds the release binaries, then for each repetition
#   1. measures the machine's raw ceilings (TCP echo, raw fan-out: `switchboard-peers raw-echo`,
#      `raw-fanout`),
#   2. holds CONNS connections on each system in turn: connect time, server RSS per connection
#      (Switchboard: `switchboard-loadtest s1-hold`; peers: `switchboard-peers <peer>-hold`),
#   3. finds each system's maximum broadcast to BCAST_CONNS subscribers at PAYLOAD bytes: publish
#      rate raised step by step until a step loses a message or its p99 reaches 1 s
#      (`switchboard-peers sb-broadcast` over `switchboard-loadtest s4-broadcast`;
#      `switchboard-peers <peer>-broadcast --max`),
# each server started fresh for each measurement and stopped after it, the systems' order rotated
# from one repetition to the next. Then it writes the medians and the Switchboard / peer ratios
# (RESULTS/summary.md, summary.json). Every JSON report stays in RESULTS.
#
# Full run (takes a while; run it on a quiet machine):
#   scripts/bench/peers.sh
# Smoke run:
#   CONNS=500 DURATION=3 REPEAT=1 STEPS=5000,10000,20000 scripts/bench/peers.sh
#
# Environment (defaults in brackets):
#   CONNS [10000]            connections held, and subscribers of the broadcast
#   BCAST_CONNS [$CONNS]     subscribers of the broadcast, if different
#   DURATION [10]            seconds each hold lasts, and each broadcast step
#   STEP_DURATION [$DURATION] seconds per broadcast step, if different
#   REPEAT [3]               repetitions (medians are reported)
#   PAYLOAD [100]            padding bytes per message
#   STEPS [switchboard-peers default: 10k … 1M deliveries/s]  broadcast steps, deliveries/s
#   PUBLISHERS [1]           publish requests in flight, every system (1 = wait for each answer, the
#                            shape of switchboard-loadtest s4-broadcast's sender)
#   SYSTEMS ["switchboard nchan socketio"]
#   RAW_ECHO_CONNS [100]     raw echo clients;  RAW_FANOUT_CONNS [$BCAST_CONNS] raw fan-out sockets
#   RAW_DURATION [5]         seconds per raw measurement;  RAW_BATCHES [1,8] frames per write
#   PIN [0]                  1: pin the raw ceilings' server to CPU0 and load to CPU1
#   SB_PORT [18291]  NCHAN_PORT [8081]  SOCKETIO_PORT [3000]
#   RESULTS [target/bench-peers/<UTC time>]
#   SKIP_INSTALL, SKIP_BUILD [unset]  1: skip that step
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

CONNS=${CONNS:-10000}
BCAST_CONNS=${BCAST_CONNS:-$CONNS}
DURATION=${DURATION:-10}
STEP_DURATION=${STEP_DURATION:-$DURATION}
REPEAT=${REPEAT:-3}
PAYLOAD=${PAYLOAD:-100}
STEPS=${STEPS:-}
PUBLISHERS=${PUBLISHERS:-1}
SYSTEMS=${SYSTEMS:-"switchboard nchan socketio"}
RAW_ECHO_CONNS=${RAW_ECHO_CONNS:-100}
RAW_FANOUT_CONNS=${RAW_FANOUT_CONNS:-$BCAST_CONNS}
RAW_DURATION=${RAW_DURATION:-5}
RAW_BATCHES=${RAW_BATCHES:-1,8}
PIN=${PIN:-0}
SB_PORT=${SB_PORT:-18291}
NCHAN_PORT=${NCHAN_PORT:-8081}
SOCKETIO_PORT=${SOCKETIO_PORT:-3000}
RESULTS=${RESULTS:-$ROOT/target/bench-peers/$(date -u +%Y%m%dT%H%M%SZ)}
KEY=peers-bench-key-$$-0123456789abcdef0123456789
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

LT=$ROOT/target/release/switchboard-loadtest
PEERS=$ROOT/target/release/switchboard-peers
SB=$ROOT/target/release/switchboard

log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install and build

for s in $SYSTEMS; do
  case $s in switchboard|nchan|socketio) ;; *) echo "unknown system in SYSTEMS: $s" >&2; exit 2 ;; esac
done
want() { [[ " $SYSTEMS " == *" $1 "* ]]; }

if [[ -z ${SKIP_INSTALL:-} ]]; then
  if want nchan && { ! command -v nginx >/dev/null 2>&1 || [[ ! -f $NCHAN_MODULE ]]; }; then
    log "installing nginx and libnginx-mod-nchan"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
  fi
  if want socketio; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    log "npm ci in bench/peers/socketio"
    (cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi
if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building release binaries"
  cargo build --release -p switchboard -p switchboard-loadtest
fi
for b in "$LT" "$PEERS" "$SB"; do
  [[ -x $b ]] || { echo "missing $b (build with cargo build --release)" >&2; exit 1; }
done

# One process may hold at most ~19,990 sockets here (docs/performance.md#limits).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < CONNS + 100 )); then
  echo "open-file limit $(ulimit -n) is too low for CONNS=$CONNS" >&2
  exit 1
fi

mkdir -p "$RESULTS/logs"
log "results in $RESULTS"

# ---------------------------------------------------------------------------------------------
# Servers: each started fresh for one measurement, stopped right after it

SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port
  for _ in $(seq 100); do
    port_open "$1" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited before listening on $1" >&2; return 1; }
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after 10 s" >&2
  return 1
}

port_of() {
  case $1 in switchboard) echo "$SB_PORT" ;; nchan) echo "$NCHAN_PORT" ;; socketio) echo "$SOCKETIO_PORT" ;; esac
}

start() { # system tag
  local sys=$1 tag=$2 port
  port=$(port_of "$sys")
  if port_open "$port"; then
    echo "127.0.0.1:$port is already in use (SB_PORT, NCHAN_PORT, SOCKETIO_PORT choose the ports)" >&2
    return 1
  fi
  case $sys in
    switchboard)
      "$SB" serve --listen "127.0.0.1:$port" --mode serverless --access-key "$KEY" \
        >"$RESULTS/logs/$tag.log" 2>&1 &
      SERVER_PID=$!
      ;;
    nchan)
      local prefix=$RESULTS/nchan-run
      rm -rf "$prefix" && mkdir -p "$prefix"
      sed "s/127\.0\.0\.1:8081/127.0.0.1:$port/" bench/peers/nginx-nchan.conf >"$prefix/nginx.conf"
      nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;' \
        >"$RESULTS/logs/$tag.log" 2>&1 &
      SERVER_PID=$!
      ;;
    socketio)
      PORT=$port HOST=127.0.0.1 node bench/peers/socketio/server.js >"$RESULTS/logs/$tag.log" 2>&1 &
      SERVER_PID=$!
      ;;
  esac
  wait_port "$port" || return 1
  if [[ $sys == nchan ]]; then
    # Wait for both workers (their RSS and CPU are what is measured).
    for _ in $(seq 50); do
      [[ $(cat /proc/"$SERVER_PID"/task/*/children 2>/dev/null | wc -w) -ge 2 ]] && break
      sleep 0.1
    done
  fi
  sleep 0.5
}

url_of() { echo "http://127.0.0.1:$(port_of "$1")"; }

hold() { # system rep
  local sys=$1 rep=$2 out="$RESULTS/$1-hold-$2.json"
  case $sys in
    switchboard)
      "$LT" --url "$(url_of "$sys")" --key "$KEY" --connections "$CONNS" --duration "$DURATION" \
        --payload-bytes "$PAYLOAD" --quiet --json-out "$out" s1-hold --server-pid "$SERVER_PID" ;;
    nchan)
      "$PEERS" nchan-hold --url "$(url_of "$sys")" --connections "$CONNS" --duration "$DURATION" \
        --payload-bytes "$PAYLOAD" --server-children-of "$SERVER_PID" --quiet --json-out "$out" ;;
    socketio)
      "$PEERS" socketio-hold --url "$(url_of "$sys")" --connections "$CONNS" --duration "$DURATION" \
        --payload-bytes "$PAYLOAD" --server-pid "$SERVER_PID" --quiet --json-out "$out" ;;
  esac
}

broadcast() { # system rep
  local sys=$1 rep=$2 out="$RESULTS/$1-broadcast-$2.json"
  local steps=()
  [[ -n $STEPS ]] && steps=(--steps "$STEPS")
  case $sys in
    switchboard)
      "$PEERS" sb-broadcast --loadtest "$LT" --url "$(url_of "$sys")" --key "$KEY" \
        --connections "$BCAST_CONNS" --duration "$STEP_DURATION" --payload-bytes "$PAYLOAD" \
        --publishers "$PUBLISHERS" "${steps[@]}" --quiet --json-out "$out" ;;
    nchan)
      "$PEERS" nchan-broadcast --max "${steps[@]}" --publishers "$PUBLISHERS" --url "$(url_of "$sys")" \
        --connections "$BCAST_CONNS" --duration "$STEP_DURATION" --payload-bytes "$PAYLOAD" \
        --server-children-of "$SERVER_PID" --quiet --json-out "$out" ;;
    socketio)
      "$PEERS" socketio-broadcast --max "${steps[@]}" --publishers "$PUBLISHERS" --url "$(url_of "$sys")" \
        --connections "$BCAST_CONNS" --duration "$STEP_DURATION" --payload-bytes "$PAYLOAD" \
        --server-pid "$SERVER_PID" --quiet --json-out "$out" ;;
  esac
}

# Runs one measurement against a fresh server; a failure is logged and the run goes on.
measure() { # what system rep
  local what=$1 sys=$2 rep=$3
  log "rep $rep: $sys $what"
  if start "$sys" "$sys-$what-$rep" && "$what" "$sys" "$rep" >"$RESULTS/logs/$sys-$what-$rep.out"; then
    sed 's/^/    /' "$RESULTS/logs/$sys-$what-$rep.out" >&2
  else
    log "rep $rep: $sys $what FAILED (see $RESULTS/logs/)"
  fi
  cleanup
}

# ---------------------------------------------------------------------------------------------
# The run

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "open files: $(ulimit -n)"
  want nchan && echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), nchan: $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
  want socketio && echo "node: $(node --version), socket.io: $(node -p 'require("./bench/peers/socketio/node_modules/socket.io/package.json").version')"
  echo "switchboard: $("$SB" --version 2>/dev/null || echo '?')"
  echo "CONNS=$CONNS BCAST_CONNS=$BCAST_CONNS DURATION=$DURATION STEP_DURATION=$STEP_DURATION REPEAT=$REPEAT PAYLOAD=$PAYLOAD STEPS=${STEPS:-default} PUBLISHERS=$PUBLISHERS PIN=$PIN"
} >"$RESULTS/env.txt"
cat "$RESULTS/env.txt" >&2

pin=()
[[ $PIN == 1 ]] && pin=(--pin)
read -r -a systems <<<"$SYSTEMS"
for rep in $(seq "$REPEAT"); do
  log "rep $rep: raw ceilings"
  "$PEERS" raw-echo --connections "$RAW_ECHO_CONNS" --duration "$RAW_DURATION" "${pin[@]}" \
    --json-out "$RESULTS/raw-echo-$rep.json" | sed 's/^/    /' >&2 || log "raw-echo FAILED"
  "$PEERS" raw-fanout --connections "$RAW_FANOUT_CONNS" --duration "$RAW_DURATION" \
    --batches "$RAW_BATCHES" "${pin[@]}" --json-out "$RESULTS/raw-fanout-$rep.json" \
    | sed 's/^/    /' >&2 || log "raw-fanout FAILED"
  # Rotate the order so that no system always runs first (or last) in a repetition.
  n=${#systems[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${systems[$(((i + rep - 1) % n))]}"); done
  for sys in "${order[@]}"; do measure hold "$sys" "$rep"; done
  for sys in "${order[@]}"; do measure broadcast "$sys" "$rep"; done
done

"$PEERS" summarize --dir "$RESULTS" >/dev/null
{
  echo "## Peers side by side ($(date -u +%Y-%m-%d))"
  echo
  echo '```'
  cat "$RESULTS/env.txt"
  echo '```'
  echo
  cat "$RESULTS/summary.md"
} >"$RESULTS/report.md"
cat "$RESULTS/report.md"
log "done: $RESULTS/report.md"
