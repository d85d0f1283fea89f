#!/usr/bin/env bash
# scripts/bench/s3-relay.sh: Default mode across nodes. A redis-server on a free port, two nodes
# (a, b) on it in Default mode, the echo example connected to node a only. S3 (EchoReturn,
# 1,000 clients, JSON, 100 B) with the clients at a (served by a's connection) and at b (relayed
# over Redis to a's connection), alternately, ROUNDS times: closed-loop round trips/s, and the
# latency paced at RATE round trips/s. Also: the same closed loop on one node without a cluster.
# Release binaries from target/release (build them first). Results in target/bench-s3relay/.
set -u
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}; RATE=${RATE:-5000}; DURATION=${DURATION:-10}; CONNS=${CONNS:-1000}
out=target/bench-s3relay; mkdir -p $out
key=bench-key-relay-$$-0123456789abcdef0123456789
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no >$out/redis.log 2>&1 & pids+=($!)
redis_pid=$!
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
sleep 0.5
start_node() { # name port [cluster args]
  target/release/switchboard serve --listen 127.0.0.1:$2 --access-key $key --mode default "${@:3}" >$out/node-$1.log 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$2/readyz >/dev/null && break; sleep 0.1; done
}
start_echo() { # port
  target/release/examples/echo --listen 127.0.0.1:0 --connection-string \
    "Endpoint=http://127.0.0.1;Port=$1;AccessKey=$key;Version=1.0;" >$out/echo-$1.log 2>&1 & pids+=($!)
  for _ in $(seq 100); do grep -q "hub server connected" $out/echo-$1.log && break; sleep 0.1; done
}
run() { # label port [rate]
  local extra=(); [ -n "${3:-}" ] && extra=(--rate $3)
  local t0; t0=$(ticks $redis_pid)
  target/release/switchboard-loadtest --url http://127.0.0.1:$2 --key $key --quiet --hub echo \
    --protocol json --payload-bytes 100 --connections $CONNS --duration $DURATION \
    --json-out $out/$1.json s3-echo "${extra[@]}" >$out/$1.txt 2>&1
  local t1; t1=$(ticks $redis_pid)
  python3 -c "
import json; j=json.load(open('$out/$1.json')); l=j['latency']; e=j['extra']
import os; rt=e.get('round_trips_per_second', 0)*$DURATION; redis_us=($t1-$t0)/os.sysconf('SC_CLK_TCK')*1e6
print('%-22s round_trips/s=%8.0f p50=%6.2fms p99=%6.2fms lost=%d errors=%d redis_cpu/round_trip=%.2fus' % ('$1', e.get('round_trips_per_second', 0), l['p50_us']/1000, l['p99_us']/1000, j.get('lost', 0), j.get('errors', 0), redis_us/max(rt,1)))" | tee -a $out/results.txt
}
echo "--- $(date -u +%FT%TZ) rounds=$ROUNDS rate=$RATE duration=$DURATION conns=$CONNS" >> $out/results.txt
start_node a 18491 --cluster redis://127.0.0.1:$rport --node-id a
start_node b 18492 --cluster redis://127.0.0.1:$rport --node-id b
start_node single 18493
start_echo 18491
start_echo 18493
sleep 3
for r in $(seq $ROUNDS); do
  run local-a-r$r 18491; run relayed-b-r$r 18492; run single-r$r 18493
  run local-a-paced-r$r 18491 $RATE; run relayed-b-paced-r$r 18492 $RATE; run single-paced-r$r 18493 $RATE
done
