#!/usr/bin/env bash
# scripts/bench/s12.sh: S12, the cluster against one node, side by side in one run. A
# redis-server on a free port; nodes n1 and n2 on it (Serverless), and a node without a cluster.
# Each round, in turn:
#   s4b        S4b (10,000 receivers, JSON, 100 B, 8 s steps, TCP_NODELAY) on the single node,
#              then on the cluster: broadcasts enter at n1, receivers 5,000 at n1 + 5,000 at n2
#              (two generator workers). Redis CPU per message n1 published.
#              And all 10,000 receivers at n2 (every delivery crosses Redis).
#   s4-paced   S4 at RATE broadcasts/s to 1,000 receivers (small enough that one broadcast's
#              fan-out does not hide a millisecond): receivers at n1 with the sender (local), at
#              n2 (every delivery crosses Redis), and on the single node. p50/p99.
#   s6         REST send-to-user at S6_RATE/s to 1,000 users, entering at n1: users at n1, at n2.
#   s5c        group join/leave churn at n1 (1,000 connections, 100 groups, CHURN_RATE ops/s):
#              connections at n1, at n2 (answered by n2 through Redis).
# Then DEATHS times: a third node n3 joins and is killed with SIGKILL; the time until n1 counts
# it gone. Release binaries from target/release. Results: target/bench-s12/results.txt.
set -u
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}; RATE=${RATE:-10}; S6_RATE=${S6_RATE:-2000}; CHURN_RATE=${CHURN_RATE:-1000}
DEATHS=${DEATHS:-3}
out=target/bench-s12; mkdir -p $out
res=$out/results.txt
key=bench-key-s12-$$-0123456789abcdef0123456789
bin=target/release/switchboard
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no >$out/redis.log 2>&1 &
redis_pid=$!; pids+=($redis_pid)
sleep 0.5
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
metric() { curl -s http://127.0.0.1:$1/metrics | awk -v m="$2" '$1 == m {print $2}'; }
start_node() { # name port [args]
  $bin serve --listen 127.0.0.1:$2 --access-key $key --mode serverless "${@:3}" >$out/node-$1.log 2>&1 &
  last_pid=$!; pids+=($last_pid)
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$2/readyz >/dev/null && break; sleep 0.1; done
}
N1=18501; N2=18502; SINGLE=18503; N3=18504
start_node n1 $N1 --cluster redis://127.0.0.1:$rport --node-id n1
start_node n2 $N2 --cluster redis://127.0.0.1:$rport --node-id n2
start_node single $SINGLE
for _ in $(seq 100); do [ "$(metric $N1 switchboard_cluster_nodes)" = 1 ] && break; sleep 0.1; done
L=(target/release/switchboard-loadtest --key $key --quiet --protocol json --payload-bytes 100)
summary() { # label json [extra text]
  python3 -c "
import json; j=json.load(open('$2')); l=j['latency']; e=j.get('extra', {})
top=e.get('max_deliveries_per_second'); rate=e.get('deliveries_per_second') or e.get('requests_per_second') or e.get('operations_per_second')
head='max=%d deliveries/s' % top if top else ('rate=%.0f/s' % rate if rate else '')
print('%-26s %-28s p50=%7.2fms p99=%7.2fms lost=%d errors=%d %s' % ('$1', head, l['p50_us']/1000, l['p99_us']/1000, j.get('lost', 0), j.get('errors', 0), '${3:-}'))" | tee -a $res
}
# Redis's own CPU while idle (heartbeats, its timers), to subtract.
i0=$(ticks $redis_pid); sleep 20; i1=$(ticks $redis_pid)
idle_per_s=$(python3 -c "import os; print(($i1-$i0)/os.sysconf('SC_CLK_TCK')/20)")
echo "--- $(date -u +%FT%TZ) rounds=$ROUNDS rate=$RATE s6_rate=$S6_RATE churn_rate=$CHURN_RATE redis_idle_cpu=${idle_per_s}s/s" >> $res
s4b=(--connections 10000 --duration 8 s4b-max --senders 16 --start-rate 5 --factor 1.5 --max-steps 15)
for r in $(seq $ROUNDS); do
  "${L[@]}" --url http://127.0.0.1:$SINGLE --workers 2 --json-out $out/s4b-single-r$r.json "${s4b[@]}" >/dev/null 2>&1
  summary s4b-single-r$r $out/s4b-single-r$r.json
  for spread in cluster remote; do
    recv=(--receiver-url http://127.0.0.1:$N1 --receiver-url http://127.0.0.1:$N2)
    [ $spread = remote ] && recv=(--receiver-url http://127.0.0.1:$N2)
    t0=$(ticks $redis_pid); p0=$(metric $N1 switchboard_cluster_published_total); s0=$(date +%s.%N)
    "${L[@]}" --url http://127.0.0.1:$N1 "${recv[@]}" --workers 2 --json-out $out/s4b-$spread-r$r.json "${s4b[@]}" >/dev/null 2>&1
    t1=$(ticks $redis_pid); p1=$(metric $N1 switchboard_cluster_published_total); s1=$(date +%s.%N)
    # Redis CPU beyond its idle rate (measured before the rounds), per message n1 published.
    summary s4b-$spread-r$r $out/s4b-$spread-r$r.json "$(python3 -c "
import os; hz=os.sysconf('SC_CLK_TCK'); busy=($t1-$t0)/hz - $idle_per_s*($s1-$s0); n=max($p1-$p0,1)
print('redis: %.2f s CPU beyond idle, %d published, %.1f us each' % (busy, n, busy*1e6/n))")"
  done
  for where in local remote single; do
    case $where in
      local) args=(--url http://127.0.0.1:$N1 --receiver-url http://127.0.0.1:$N1);;
      remote) args=(--url http://127.0.0.1:$N1 --receiver-url http://127.0.0.1:$N2);;
      single) args=(--url http://127.0.0.1:$SINGLE);;
    esac
    "${L[@]}" "${args[@]}" --workers 2 --connections 1000 --duration 15 --rate $RATE \
      --json-out $out/s4-$where-r$r.json s4-broadcast --senders 16 >/dev/null 2>&1
    summary s4-paced-$where-r$r $out/s4-$where-r$r.json
  done
  for where in local remote; do
    recv=$([ $where = local ] && echo $N1 || echo $N2)
    "${L[@]}" --url http://127.0.0.1:$N1 --receiver-url http://127.0.0.1:$recv --connections 1000 \
      --duration 10 --rate $S6_RATE --json-out $out/s6-$where-r$r.json s6-rest-user --concurrency 64 >/dev/null 2>&1
    summary s6-user-$where-r$r $out/s6-$where-r$r.json
    "${L[@]}" --url http://127.0.0.1:$N1 --receiver-url http://127.0.0.1:$recv --connections 1000 \
      --duration 10 --rate $CHURN_RATE --json-out $out/s5c-$where-r$r.json s5-groups --churn --groups 100 --senders 16 >/dev/null 2>&1
    summary s5c-churn-$where-r$r $out/s5c-$where-r$r.json
  done
done
for d in $(seq $DEATHS); do
  start_node n3 $N3 --cluster redis://127.0.0.1:$rport --node-id n3
  n3=$last_pid
  for _ in $(seq 200); do [ "$(metric $N1 switchboard_cluster_nodes)" = 2 ] && break; sleep 0.05; done
  sleep 1
  s0=$(date +%s.%N); kill -9 $n3
  while [ "$(metric $N1 switchboard_cluster_nodes)" != 1 ]; do sleep 0.05; done
  s1=$(date +%s.%N)
  python3 -c "print('death-%d                    n1 counted n3 gone after %.2f s (heartbeat 2 s, node_timeout 8 s)' % ($d, $s1-$s0))" | tee -a $res
done
