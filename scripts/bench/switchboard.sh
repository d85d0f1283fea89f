#!/usr/bin/env bash
# Switchboard's scenario suite S1–S11 (docs/performance.md#scenarios) with switchboard-loadtest,
# on this machine, over 127.0.0.1: builds the release binaries, starts the brokers it needs (a fresh
# one per scenario run; the echo example for S3), runs every scenario's full run for JSON and
# MessagePack at 100 B and 2,048 B where the payload or protocol matters, writes one JSON report
# per run into RESULTS (plus summary.txt with every one-screen summary), and stops whatever it
# started, whatever happens (trap).
#
# Full run (hours: S1 holds 10 min per transport, S10 soaks 30 min; run it on a quiet machine):
#   scripts/bench/switchboard.sh
# Verification run (a few minutes):
#   DURATION=2 CONNS=small scripts/bench/switchboard.sh
#
# Environment (defaults in brackets):
#   DURATION [unset]        seconds for every scenario instead of its own (S1 hold, S10 soak and
#                           each S4b step included)
#   CONNS [full]            small: every connection count divided by 50 (at least 10)
#   SCENARIOS [all]         a subset, e.g. "s1 s4a s4b s11" (names: s1 s1-sse s1-lp s2 s3 s3b
#                           s4a s4b s5a s5b s5c s6 s7 s8 s9 s10 s11)
#   PROTOCOLS ["json messagepack"]   PAYLOADS ["100 2048"]
#   PIN [0]                 1: broker on CPU0, generator on CPU1 (taskset); report both runs
#   GEN_WORKERS [2]         generator processes for the 19,000-connection runs (S1, S10)
#   PORT_BASE [18281]       brokers listen on PORT_BASE, +1 (Default mode), +2 (S9); the echo
#                           app on +3; the S7 upstream receiver on +9
#   RESULTS [target/bench-switchboard/<UTC time>]
#   SKIP_BUILD [unset]      1: use the binaries already in target/release
#   S9_REPEATS [3]          slow-consumer runs (each with its control run) per protocol
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=${DURATION:-}
CONNS=${CONNS:-full}
SCENARIOS=${SCENARIOS:-"s1 s1-sse s1-lp s2 s3 s3b s4a s4b s5a s5b s5c s6 s7 s8 s9 s10 s11"}
PROTOCOLS=${PROTOCOLS:-"json messagepack"}
PAYLOADS=${PAYLOADS:-"100 2048"}
PIN=${PIN:-0}
GEN_WORKERS=${GEN_WORKERS:-2}
PORT_BASE=${PORT_BASE:-18281}
RESULTS=${RESULTS:-$ROOT/target/bench-switchboard/$(date -u +%Y%m%dT%H%M%SZ)}
KEY=switchboard-bench-key-$$-0123456789abcdef0123456789
BIN=$ROOT/target/release
SB_PORT=$PORT_BASE
DEFAULT_PORT=$((PORT_BASE + 1))
S9_PORT=$((PORT_BASE + 2))
ECHO_PORT=$((PORT_BASE + 3))
UPSTREAM_PORT=$((PORT_BASE + 9))

mkdir -p "$RESULTS"
SUMMARY=$RESULTS/summary.txt
: >"$SUMMARY"

# The file-descriptor cap of this machine (20,000) cannot be raised; use all of it.
ulimit -n "$(ulimit -Hn)"

STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# conns N: N, or N/50 (at least 10) with CONNS=small.
conns() {
    if [ "$CONNS" = small ]; then
        local n=$(($1 / 50))
        echo $((n < 10 ? 10 : n))
    else
        echo "$1"
    fi
}

# dur S: S, or $DURATION when set.
dur() { echo "${DURATION:-$1}"; }

want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

pin_broker=()
pin_gen=()
if [ "$PIN" = 1 ]; then
    pin_broker=(taskset -c 0)
    pin_gen=(taskset -c 1)
fi

if [ -z "${SKIP_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release -p switchboard -p switchboard-loadtest \
        --bin switchboard --bin switchboard-loadtest
    cargo build --release -p switchboard --example echo
fi

# start_broker NAME PORT ARGS...: starts a broker, waits for /readyz, sets BROKER_PID.
start_broker() {
    local name=$1 port=$2
    shift 2
    "${pin_broker[@]}" "$BIN/switchboard" serve --listen "127.0.0.1:$port" --access-key "$KEY" \
        "$@" >"$RESULTS/broker-$name.log" 2>&1 &
    BROKER_PID=$!
    STARTED+=("$BROKER_PID")
    local i
    for i in $(seq 100); do
        if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            log "broker $name exited: $(tail -3 "$RESULTS/broker-$name.log")"
            return 1
        fi
        sleep 0.1
    done
    log "broker $name not ready on $port"
    return 1
}

# stop PID: stops one process this script started.
stop() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${STARTED[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    STARTED=("${keep[@]}")
}

# gen NAME PORT ARGS...: one generator run against the broker on PORT; JSON in RESULTS/NAME.json.
# A failed run is logged and the suite goes on.
gen() {
    local name=$1 port=$2
    shift 2
    log "run $name"
    if "${pin_gen[@]}" "$BIN/switchboard-loadtest" --url "http://127.0.0.1:$port" --key "$KEY" \
        --quiet --json-out "$RESULTS/$name.json" "$@" >"$RESULTS/$name.txt" 2>&1; then
        cat "$RESULTS/$name.txt" >>"$SUMMARY"
    else
        log "run $name FAILED: $(tail -3 "$RESULTS/$name.txt")"
        printf '%s FAILED\n' "$name" >>"$SUMMARY"
    fi
}

# json_get FILE EXPR: a jq expression on a report ("" if absent).
json_get() { jq -r "$2 // empty" "$1" 2>/dev/null || true; }

# A fresh Serverless broker per run, so RSS figures start from an idle process. BROKER_ARGS
# adds flags (S7's upstream: with an upstream rule for connected events, the broker refuses
# clients while the upstream is unreachable, so only S7 gets one).
serverless_run() {
    local name=$1
    shift
    start_broker "$name" "$SB_PORT" --mode serverless ${BROKER_ARGS:-}
    local pid=$BROKER_PID
    gen "$name" "$SB_PORT" "$@" $([ "${PASS_PID:-}" = 1 ] && echo --server-pid "$pid")
    stop "$pid"
}

# S1: idle capacity (19,000 WebSockets; 5,000 SSE; 5,000 long polling), 10 min each.
if want s1; then
    PASS_PID=1 serverless_run s1-hold-websockets --workers "$GEN_WORKERS" \
        --connections "$(conns 19000)" --negotiate --parallel 128 --duration "$(dur 600)" \
        s1-hold --transport websockets --groups 100
fi
for t in sse long-polling; do
    short=${t/long-polling/lp}
    if want "s1-$short"; then
        PASS_PID=1 serverless_run "s1-hold-$t" --connections "$(conns 5000)" --parallel 128 \
            --duration "$(dur 600)" s1-hold --transport "$t" --groups 100
    fi
done

# S2: 20,000 full connects from 64 workers.
if want s2; then
    for p in $PROTOCOLS; do
        serverless_run "s2-connect-$p" --protocol "$p" --connections "$(conns 20000)" \
            --parallel 64 --duration "$(dur 60)" s2-connect
    done
fi

# S3: Default mode, the echo hub server, 1,000 clients closed-loop; then paced at half the
# target rate (12,500/s at 100 B, 7,500/s at 2 KB: where the p99 target applies) and at half
# the rate reached.
if want s3; then
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            start_broker "s3-$p-$b" "$DEFAULT_PORT" --mode default
            broker=$BROKER_PID
            "$BIN/examples/echo" --listen "127.0.0.1:$ECHO_PORT" --connection-string \
                "Endpoint=http://127.0.0.1;Port=$DEFAULT_PORT;AccessKey=$KEY;Version=1.0;" \
                >"$RESULTS/echo-$p-$b.log" 2>&1 &
            echo_pid=$!
            STARTED+=("$echo_pid")
            for _ in $(seq 100); do
                grep -q "hub server connected" "$RESULTS/echo-$p-$b.log" && break
                sleep 0.1
            done
            gen "s3-echo-$p-$b" "$DEFAULT_PORT" --hub echo --protocol "$p" --payload-bytes "$b" \
                --connections "$(conns 1000)" --duration "$(dur 30)" s3-echo
            target_half=$([ "$b" -ge 2048 ] && echo 7500 || echo 12500)
            gen "s3-echo-target-half-$p-$b" "$DEFAULT_PORT" --hub echo --protocol "$p" \
                --payload-bytes "$b" --connections "$(conns 1000)" --rate "$target_half" \
                --duration "$(dur 30)" s3-echo
            rate=$(json_get "$RESULTS/s3-echo-$p-$b.json" '.extra.round_trips_per_second')
            if [ -n "$rate" ]; then
                half=$(python3 -c "print(round($rate / 2, 1))")
                gen "s3-echo-half-$p-$b" "$DEFAULT_PORT" --hub echo --protocol "$p" \
                    --payload-bytes "$b" --connections "$(conns 1000)" --rate "$half" \
                    --duration "$(dur 30)" s3-echo
            fi
            stop "$echo_pid"
            stop "$broker"
        done
    done
fi

# S3b: echo inside the service (REST round trip to the client's own connection).
if want s3b; then
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            serverless_run "s3b-echo-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --connections "$(conns 1000)" --duration "$(dur 30)" s3b-echo
        done
    done
fi

# S4a: 10,000 connections, one 150 B broadcast 5×/s, 60 s.
if want s4a; then
    for p in $PROTOCOLS; do
        serverless_run "s4a-broadcast-$p" --protocol "$p" --payload-bytes 150 \
            --connections "$(conns 10000)" --rate 5 --duration "$(dur 60)" \
            s4-broadcast --senders 1
    done
fi

# S4b: 10,000 connections, broadcast rate raised until p99 > 1 s or loss (10 s steps); once
# with the default TCP_NODELAY and once with Nagle's algorithm (`tcp_nodelay = false`).
if want s4b; then
    printf 'tcp_nodelay = false\n' >"$RESULTS/nagle.toml"
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            serverless_run "s4b-max-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --connections "$(conns 10000)" --duration "$(dur 10)" \
                s4b-max --senders 16 --start-rate 5 --factor 1.5 --max-steps 15
            BROKER_ARGS="--config $RESULTS/nagle.toml" serverless_run "s4b-max-nagle-$p-$b" \
                --protocol "$p" --payload-bytes "$b" --connections "$(conns 10000)" \
                --duration "$(dur 10)" s4b-max --senders 16 --start-rate 5 --factor 1.5 \
                --max-steps 15
        done
    done
fi

# S5: (a) 1,000 groups of 10, (b) 10 groups of 1,000, both at the highest rate the senders
# reach; (c) join/leave churn over 1,000 connections and 100 groups.
if want s5a; then
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            serverless_run "s5a-groups-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --duration "$(dur 30)" s5-groups --groups "$(conns 1000)" --group-size 10 \
                --senders 32
        done
    done
fi
if want s5b; then
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            serverless_run "s5b-groups-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --duration "$(dur 30)" s5-groups --groups 10 --group-size "$(conns 1000)" \
                --senders 10
        done
    done
fi
if want s5c; then
    serverless_run s5c-churn --connections "$(conns 1000)" --duration "$(dur 30)" \
        s5-groups --churn --groups 100 --senders 64
fi

# S6: REST send-to-user, 64 keep-alive clients, 1,000 users: at the highest rate, then paced at
# the target's 10,000 requests/s (where its p99 applies).
if want s6; then
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            serverless_run "s6-rest-user-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --connections "$(conns 1000)" --duration "$(dur 30)" s6-rest-user --concurrency 64
            serverless_run "s6-rest-user-target-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --connections "$(conns 1000)" --rate 10000 --duration "$(dur 30)" \
                s6-rest-user --concurrency 64
        done
    done
fi

# S7: upstream webhooks; 500 clients (the broker queues at most 64 + 512 upstream calls per
# upstream host by default), closed loop, then paced at the target's 5,000 calls/s.
if want s7; then
    upstream="--upstream http://127.0.0.1:$UPSTREAM_PORT/upstream/{hub}/{category}/{event}"
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            BROKER_ARGS=$upstream serverless_run "s7-upstream-$p-$b" --protocol "$p" \
                --payload-bytes "$b" --connections "$(conns 500)" --duration "$(dur 30)" \
                s7-upstream --upstream-listen "127.0.0.1:$UPSTREAM_PORT"
            BROKER_ARGS=$upstream serverless_run "s7-upstream-target-$p-$b" --protocol "$p" \
                --payload-bytes "$b" --connections "$(conns 500)" --rate 5000 \
                --duration "$(dur 30)" s7-upstream --upstream-listen "127.0.0.1:$UPSTREAM_PORT"
        done
    done
fi

# S8: 1,000 SSE + 1,000 long-polling clients (+ 1,000 WebSockets for comparison) under a
# broadcast of 25/s.
if want s8; then
    for p in $PROTOCOLS; do
        for b in $PAYLOADS; do
            n=$(conns 1000)
            serverless_run "s8-fallback-$p-$b" --protocol "$p" --payload-bytes "$b" \
                --rate 25 --duration "$(dur 30)" \
                s8-fallback --sse "$n" --long-polling "$n" --websockets "$n" --senders 2
        done
    done
fi

# S9: slow consumer. At S4a's 750 B/s per connection the kernel alone absorbs a non-reading
# socket for hours, so the slow connection gets 50 broadcasts/s of 2 KB (100 KB/s) and is cut
# within about a minute. 200 connections keep the machine far from saturation (the others' p99
# is a few ms); even so one run's two phases differ by ±10–60 % on this VM without a slow
# consumer, so compare medians: S9_REPEATS slow runs, each followed by a control run (nobody
# stops reading).
if want s9; then
    for p in $PROTOCOLS; do
        for i in $(seq "${S9_REPEATS:-3}"); do
            start_broker "s9-$p-$i" "$S9_PORT" --mode serverless
            broker=$BROKER_PID
            gen "s9-slow-consumer-$p-$i" "$S9_PORT" --protocol "$p" --payload-bytes 2048 \
                --connections "$(conns 200)" --rate 50 --duration "$(dur 60)" \
                s9-slow-consumer --senders 4 --baseline-duration "$(dur 20)" --cut-wait 15
            stop "$broker"
            start_broker "s9-control-$p-$i" "$S9_PORT" --mode serverless
            broker=$BROKER_PID
            gen "s9-slow-consumer-control-$p-$i" "$S9_PORT" --protocol "$p" \
                --payload-bytes 2048 --connections "$(conns 200)" --rate 50 \
                --duration "$(dur 60)" s9-slow-consumer --senders 4 \
                --baseline-duration "$(dur 20)" --control
            stop "$broker"
        done
    done
fi

# S10: soak, 19,000 connections, 30 min at half the S4b result (100 B, JSON), RSS every 60 s.
if want s10; then
    rate=$(json_get "$RESULTS/s4b-max-json-100.json" '.extra.best_rate')
    rate=$(python3 -c "print(round(${rate:-10} / 2, 2))")
    interval=60
    [ -n "$DURATION" ] && interval=$(python3 -c "print(max(0.5, $DURATION / 4))")
    PASS_PID=1 serverless_run s10-soak --workers "$GEN_WORKERS" --connections "$(conns 19000)" \
        --negotiate --parallel 128 --rate "$rate" --duration "$(dur 1800)" \
        s10-soak --interval "$interval" --senders 8
fi

# S11: stateful reconnect of 10 % of 10,000 connections during S4a.
if want s11; then
    for p in $PROTOCOLS; do
        serverless_run "s11-reconnect-$p" --protocol "$p" --payload-bytes 150 \
            --connections "$(conns 10000)" --rate 5 --duration "$(dur 60)" \
            s11-reconnect --fraction 0.1 --down-ms 1000
    done
fi

log "done: $RESULTS"
# Runs with errors, drops, loss or duplicates (S4b's last step may lose by design: it is where
# the ramp stopped).
for f in "$RESULTS"/*.json; do
    jq -r 'select(.errors + .dropped + .lost + .duplicates > 0)
        | "not clean: \(input_filename): errors \(.errors) dropped \(.dropped) lost \(.lost) duplicates \(.duplicates)"' \
        "$f" 2>/dev/null >&2 || true
done
