#!/usr/bin/env bash
# The pictures of BENCHMARKS.md: switchboard-loadtest runs with --report, each against a fresh
# release broker on 127.0.0.1 (the echo example as hub server for S3). Writes the SVGs into
# docs/bench/ and the HTML pages, JSON reports and logs into OUT; stops whatever it started.
#
#   cargo build --release --bin switchboard && cargo build --release -p switchboard --example echo
#   cargo build --release -p switchboard-loadtest --bins
#   docs/bench/pictures.sh
#
# Environment (defaults in brackets):
#   ONLY ["s3 s3-paced s4a s4b"]   a subset of the runs
#   BIN [target/release]           where the release binaries are (CARGO_TARGET_DIR/release)
#   OUT [target/bench-pictures/<UTC time>]
#   PORT_BASE [18381]              broker on PORT_BASE, the echo app on PORT_BASE + 1
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ONLY=${ONLY:-"s3 s3-paced s4a s4b"}
BIN=${BIN:-$ROOT/target/release}
OUT=${OUT:-$ROOT/target/bench-pictures/$(date -u +%Y%m%dT%H%M%SZ)}
PORT=${PORT_BASE:-18381}
ECHO_PORT=$((PORT + 1))
KEY=switchboard-pictures-key-$$-0123456789abcdef0123456789
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
# 10,000 receivers in one process: use the whole file-descriptor cap.
ulimit -n "$(ulimit -Hn)"

STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# broker NAME MODE: a fresh broker, ready.
broker() {
    "$BIN/switchboard" serve --listen "127.0.0.1:$PORT" --access-key "$KEY" --mode "$2" \
        >"$OUT/broker-$1.log" 2>&1 &
    STARTED+=($!)
    for _ in $(seq 100); do
        curl -sf "$URL/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "broker $1 not ready"
    return 1
}

# echo_app NAME: the echo hub server (S3), connected.
echo_app() {
    "$BIN/examples/echo" --listen "127.0.0.1:$ECHO_PORT" --connection-string \
        "Endpoint=http://127.0.0.1;Port=$PORT;AccessKey=$KEY;Version=1.0;" \
        >"$OUT/echo-$1.log" 2>&1 &
    STARTED+=($!)
    for _ in $(seq 100); do
        grep -q "hub server connected" "$OUT/echo-$1.log" && return 0
        sleep 0.1
    done
    log "echo app $1 not connected"
    return 1
}

# gen NAME ARGS...: one run; docs/bench/NAME.svg, OUT/NAME.html, OUT/NAME.json.
gen() {
    local name=$1
    shift
    log "run $name"
    "$BIN/switchboard-loadtest" --url "$URL" --key "$KEY" --quiet \
        --json-out "$OUT/$name.json" --report "$OUT/$name.html" \
        --report "$ROOT/docs/bench/$name.svg" "$@" | tee "$OUT/$name.txt"
}

if want s3; then
    broker s3 default && echo_app s3
    gen s3-echo --hub echo --connections 1000 --duration 30 s3-echo
    cleanup
fi
if want s3-paced; then
    broker s3-paced default && echo_app s3-paced
    gen s3-echo-paced --hub echo --connections 1000 --rate 12500 --duration 30 s3-echo
    cleanup
fi
if want s4a; then
    broker s4a serverless
    gen s4a-broadcast --connections 10000 --payload-bytes 150 --rate 5 --duration 60 \
        s4-broadcast
    cleanup
fi
if want s4b; then
    broker s4b serverless
    gen s4b-max --connections 10000 --duration 10 \
        s4b-max --senders 16 --start-rate 5 --factor 1.5 --max-steps 15
    cleanup
fi
log "done: docs/bench/*.svg, $OUT"
