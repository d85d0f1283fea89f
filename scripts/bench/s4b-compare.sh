#!/usr/bin/env bash
# scripts/bench/s4b-compare.sh LABEL BROKER_BIN: one S4b run (TCP_NODELAY, JSON, 100 B, 10,000
# receivers, 8-second steps) of the broker binary BROKER_BIN with this tree's load generator
# (target/release/switchboard-loadtest), for comparing builds with one generator. Results go to
# target/bench-s4b/LABEL/ and one line per run to target/bench-s4b/results.txt.
# ATTACH, when set, is a command run beside the run (with PORT and KEY in its environment, in
# its own process group, stopped at the end): e.g. a live-trace viewer (scripts/bench/observe.sh).
set -u
cd "$(dirname "$0")/../.."
label=$1; bin=$2
key=bench-key-$$-0123456789abcdef0123456789
port=18471
base=target/bench-s4b
out=$base/$label
mkdir -p $out
$bin serve --listen 127.0.0.1:$port --access-key $key --mode serverless > $out/broker.log 2>&1 &
pid=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
apid=
if [ -n "${ATTACH:-}" ]; then
  PORT=$port KEY=$key setsid bash -c "$ATTACH" > $out/attach.log 2>&1 &
  apid=$!
  sleep 3
fi
target/release/switchboard-loadtest --url http://127.0.0.1:$port --key $key --quiet \
  --json-out $out/s4b.json --protocol json --payload-bytes 100 --connections 10000 --duration 8 \
  s4b-max --senders 16 --start-rate 5 --factor 1.5 --max-steps 15 > $out/s4b.txt 2>&1
# The broker's CPU time (user + system, in clock ticks) over the whole run: with the deliveries
# the generator counted, CPU per delivery does not hinge on where a p99 crosses the 1 s bound.
ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
if [ -n "$apid" ]; then kill -- -$apid 2>/dev/null; wait $apid 2>/dev/null; fi
kill $pid; wait $pid 2>/dev/null
python3 -c "
import json, os; j=json.load(open('$out/s4b.json'))
steps=j['extra']['steps']
delivered=sum(x.get('received', 0) for x in steps) or j.get('received', 0)
cpu_s=$ticks/os.sysconf('SC_CLK_TCK')
per=(cpu_s*1e6/delivered) if delivered else float('nan')
print('$label', round(j['extra']['max_deliveries_per_second']), 'cpu_s=%.1f delivered=%d us/delivery=%.2f' % (cpu_s, delivered, per), [(x['step'], x['latency']['p99_us']//1000) for x in steps])" >> $base/results.txt
