#!/usr/bin/env bash
# The relay's merge throughput: NODES stand-in observers (cli/examples/flow_replay_server.rs,
# realistic flows at RATE/NODES flows/s each), `flowscope relay` in front of them, and
# `flowscope observe --follow -o compact` through the relay into a file. Prints the flows
# written per second and the relay's CPU. Usage: bench/relay.sh [RATE] [SECONDS] [NODES]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-100000}
SECS=${2:-10}
NODES=${3:-2}
OUT=$(mktemp /tmp/fs-relay-bench.XXXXXX)
cargo build --release -q --bin flowscope -p flowscope
cargo build --release -q -p flowscope-cli --example flow_replay_server
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -f "$OUT"; }
trap cleanup EXIT INT TERM
PEERS=()
for i in $(seq 1 "$NODES"); do
  port=$((46000 + i))
  ./target/release/examples/flow_replay_server 127.0.0.1:$port $((RATE / NODES)) "node-$i" 2>/dev/null &
  PIDS+=($!)
  PEERS+=(--peer 127.0.0.1:$port)
done
./target/release/flowscope relay --listen 127.0.0.1:46000 --no-metrics "${PEERS[@]}" 2>/dev/null &
RELAY=$!
PIDS+=($RELAY)
for _ in $(seq 50); do
  connected=$(curl -s 127.0.0.1:46000/api/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_connected_nodes"])' 2>/dev/null || echo 0)
  [ "$connected" = "$NODES" ] && break
  sleep 0.2
done
./target/release/flowscope observe --server 127.0.0.1:46000 -f -o compact --color never >"$OUT" &
CLIENT=$!
PIDS+=($CLIENT)
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
l0=$(wc -l <"$OUT"); r0=$(ticks $RELAY); c0=$(ticks $CLIENT); t0=$(date +%s.%N)
sleep "$SECS"
l1=$(wc -l <"$OUT"); r1=$(ticks $RELAY); c1=$(ticks $CLIENT); t1=$(date +%s.%N)
kill -INT $CLIENT; wait $CLIENT || true
HZ=$(getconf CLK_TCK)
python3 - "$l0" "$l1" "$r0" "$r1" "$c0" "$c1" "$t0" "$t1" "$HZ" "$RATE" "$NODES" <<'PY'
import sys
l0, l1, r0, r1, c0, c1 = map(int, sys.argv[1:7]); t0, t1 = float(sys.argv[7]), float(sys.argv[8])
hz, rate, nodes = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
dt = t1 - t0
print("offered %d flows/s from %d nodes for %.1f s" % (rate, nodes, dt))
print("through the relay, observe -f -o compact > file: %.0f flows/s written" % ((l1 - l0) / dt))
print("relay CPU: %.1f%% of one core; client CPU: %.1f%%" % ((r1 - r0) / hz / dt * 100, (c1 - c0) / hz / dt * 100))
PY
