#!/usr/bin/env bash
# scripts/bench/s4-cpu-compare.sh LABEL BROKER_BIN RATE: one S4 run at a fixed RATE broadcasts/s
# (TCP_NODELAY, JSON, 100 B, 10,000 receivers, 15 s) of BROKER_BIN with this tree's load
# generator, for comparing builds where the S4b steps are too coarse. Records the broker's CPU
# time and its delivered-message and socket-write counters (/metrics) once the receivers are
# connected and again at the end: CPU per delivery and deliveries per write over the same
# window, and the generator's latency percentiles. One line per run goes to
# target/bench-s4cpu/results.txt.
set -u
cd "$(dirname "$0")/../.."
label=$1; bin=$2; rate=$3
key=bench-key-$$-0123456789abcdef0123456789
port=18472
base=target/bench-s4cpu
out=$base/$label-$rate
mkdir -p $out
$bin serve --listen 127.0.0.1:$port --access-key $key --mode serverless > $out/broker.log 2>&1 &
pid=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
counter() { curl -s http://127.0.0.1:$port/metrics | awk -v m="$1" '$1 == m {print $2}'; }
target/release/switchboard-loadtest --url http://127.0.0.1:$port --key $key --quiet \
  --json-out $out/s4.json --protocol json --payload-bytes 100 --connections 10000 --duration 15 \
  --rate $rate s4-broadcast --senders 16 > $out/s4.txt 2>&1 &
gen=$!
# The broadcast starts once all 10,000 receivers are up: wait for the broker to count them.
for i in $(seq 600); do
  n=$(curl -s http://127.0.0.1:$port/metrics | awk '/^switchboard_connections / {s+=$NF} END {print s+0}')
  [ "${n:-0}" -ge 10000 ] && break
  sleep 0.1
done
t0=$(ticks); d0=$(counter switchboard_messages_delivered_total); w0=$(counter switchboard_socket_writes_total)
wait $gen
t1=$(ticks); d1=$(counter switchboard_messages_delivered_total); w1=$(counter switchboard_socket_writes_total)
kill $pid; wait $pid 2>/dev/null
python3 -c "
import json, os; j=json.load(open('$out/s4.json'))
hz=os.sysconf('SC_CLK_TCK'); cpu=($t1-$t0)/hz
d=$d1-$d0; w=$w1-$w0; l=j['latency']
print('$label rate=$rate received=%d lost=%d window: delivered=%d cpu_s=%.2f us/delivery=%.2f deliveries/write=%.2f p50=%dms p99=%dms' % (j['received'], j['lost'], d, cpu, cpu*1e6/max(d,1), d/max(w,1), l['p50_us']//1000, l['p99_us']//1000))" >> $base/results.txt
tail -1 $base/results.txt
