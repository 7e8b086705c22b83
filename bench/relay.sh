#!/usr/bin/env bash
# The relay's merge throughput: NODES stand-in observers (cli/examples/flow_replay_server.rs,
# realistic flows at RATE/NODES flows/s each, over WebSocket and gRPC), `flowscope relay` in
# front of them, and one client following the relay:
#   CLIENT=observe    `flowscope observe --follow -o compact` into a file (gRPC; the default)
#   CLIENT=grpc       a client that only counts, over gRPC (cli/examples/flow_count.rs): the
#                     relay asks the observers over gRPC and forwards their encoded responses
#   CLIENT=websocket  the same over the WebSocket: the relay forwards the observers' JSON lines
#   CLIENT=all        grpc, then websocket, then observe, each against a fresh relay
# Prints the flows delivered per second and the relay's and the client's CPU.
# Usage: bench/relay.sh [RATE] [SECONDS] [NODES] [CLIENT]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-100000}
SECS=${2:-10}
NODES=${3:-2}
CLIENT=${4:-observe}
if [ "$CLIENT" = all ]; then
  for c in grpc websocket observe; do "$0" "$RATE" "$SECS" "$NODES" "$c"; done
  exit 0
fi
OUT=$(mktemp /tmp/fs-relay-bench.XXXXXX)
cargo build --release -q --bin flowscope -p flowscope
cargo build --release -q -p flowscope-cli --example flow_replay_server --example flow_count
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
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
case "$CLIENT" in
  grpc | websocket)
    scheme=grpc; [ "$CLIENT" = websocket ] && scheme=ws
    ./target/release/examples/flow_count "$scheme://127.0.0.1:46000" 2 "$SECS" >"$OUT" &
    COUNTER=$!
    PIDS+=($COUNTER)
    # CPU over the counting window, less half a second: the counter exits at its end.
    sleep 2
    r0=$(ticks $RELAY); c0=$(ticks $COUNTER); t0=$(date +%s.%N)
    sleep "$(python3 -c "print($SECS - 0.5)")"
    r1=$(ticks $RELAY); c1=$(ticks $COUNTER); t1=$(date +%s.%N)
    wait $COUNTER
    python3 - "$(cat "$OUT")" "$r0" "$r1" "$c0" "$c1" "$HZ" "$RATE" "$NODES" "$CLIENT" "$t0" "$t1" <<'PY'
import sys
fields = dict(kv.split("=") for kv in sys.argv[1].split())
r0, r1, c0, c1, hz, rate, nodes = map(int, sys.argv[2:9])
dt = float(sys.argv[11]) - float(sys.argv[10])
flows, secs = int(fields["flows"]), float(fields["seconds"])
print("offered %d flows/s from %d nodes; counted %.1f s" % (rate, nodes, secs))
print("through the relay over %s, a client that counts: %.0f flows/s delivered, %s reported lost"
      % (sys.argv[9], flows / secs, fields["lost"]))
print("relay CPU: %.1f%% of one core; client CPU: %.1f%%" % ((r1 - r0) / hz / dt * 100, (c1 - c0) / hz / dt * 100))
PY
    ;;
  observe)
    ./target/release/flowscope observe --server 127.0.0.1:46000 -f -o compact --color never >"$OUT" &
    CLIENT_PID=$!
    PIDS+=($CLIENT_PID)
    sleep 2
    l0=$(wc -l <"$OUT"); r0=$(ticks $RELAY); c0=$(ticks $CLIENT_PID); t0=$(date +%s.%N)
    sleep "$SECS"
    l1=$(wc -l <"$OUT"); r1=$(ticks $RELAY); c1=$(ticks $CLIENT_PID); t1=$(date +%s.%N)
    kill -INT $CLIENT_PID; wait $CLIENT_PID || true
    python3 - "$l0" "$l1" "$r0" "$r1" "$c0" "$c1" "$t0" "$t1" "$HZ" "$RATE" "$NODES" <<'PY'
import sys
l0, l1, r0, r1, c0, c1 = map(int, sys.argv[1:7]); t0, t1 = float(sys.argv[7]), float(sys.argv[8])
hz, rate, nodes = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
dt = t1 - t0
print("offered %d flows/s from %d nodes for %.1f s" % (rate, nodes, dt))
print("through the relay, observe -f -o compact > file (gRPC): %.0f flows/s written" % ((l1 - l0) / dt))
print("relay CPU: %.1f%% of one core; client CPU: %.1f%%" % ((r1 - r0) / hz / dt * 100, (c1 - c0) / hz / dt * 100))
PY
    ;;
  *)
    echo "CLIENT is observe, grpc, websocket or all" >&2
    exit 2
    ;;
esac
