#!/usr/bin/env bash
# `flowscope observe --follow -o compact` into a file, fed RATE flows/s (default 100,000) by a
# stand-in server that replays realistic flows (cli/examples/flow_replay_server.rs): flows
# written per second, and the client's CPU use at that rate. Usage: bench/observe.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-100000}
SECS=${2:-10}
PORT=45998
OUT=$(mktemp /tmp/fs-observe-bench.XXXXXX)
cargo build --release -q --bin flowscope -p flowscope
cargo build --release -q -p flowscope-cli --example flow_replay_server
./target/release/examples/flow_replay_server 127.0.0.1:$PORT "$RATE" 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -f "$OUT"' EXIT INT TERM
sleep 0.5
./target/release/flowscope observe --server 127.0.0.1:$PORT -f -o compact --color never >"$OUT" &
CLIENT=$!
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
l0=$(wc -l <"$OUT"); c0=$(ticks $CLIENT); s0=$(ticks $SERVER); t0=$(date +%s.%N)
sleep "$SECS"
l1=$(wc -l <"$OUT"); c1=$(ticks $CLIENT); s1=$(ticks $SERVER); t1=$(date +%s.%N)
kill -INT $CLIENT; wait $CLIENT || true
HZ=$(getconf CLK_TCK)
python3 - "$l0" "$l1" "$c0" "$c1" "$s0" "$s1" "$t0" "$t1" "$HZ" "$RATE" <<'PY'
import sys
l0, l1, c0, c1, s0, s1 = map(int, sys.argv[1:7]); t0, t1 = float(sys.argv[7]), float(sys.argv[8])
hz, rate = int(sys.argv[9]), int(sys.argv[10])
dt = t1 - t0
print("offered %d flows/s for %.1f s" % (rate, dt))
print("observe -f -o compact > file: %.0f flows/s written" % ((l1 - l0) / dt))
print("client CPU: %.1f%% of one core (user+system); server CPU: %.1f%%" % ((c1 - c0) / hz / dt * 100, (s1 - s0) / hz / dt * 100))
PY
