# Shared by the bench scripts: a test host in a namespace joined to this machine by a veth,
# removed on exit (also on failure or Ctrl-C).
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/flowscope}
SFX=$$
NS=fsb-$SFX
HIF=fsb$SFX
HOST_IP=198.19.250.1
NS_IP=198.19.250.2
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HIF" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

make_host() {
  ip netns add "$NS"
  ip link add "$HIF" type veth peer name eth0 netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HIF"
  ip link set "$HIF" up
  ip -n "$NS" addr add "$NS_IP/24" dev eth0
  ip -n "$NS" link set eth0 up
  ip -n "$NS" link set lo up
}

# start_observer PORT [ARGS...]: runs the observer on the test host's veth, waits until ready.
start_observer() {
  local port=$1; shift
  "$BIN" observer --no-pin --interface "$HIF" --listen "127.0.0.1:$port" "$@" 2>/tmp/fsb-observer-$SFX.log &
  OBS_PID=$!
  PIDS+=("$OBS_PID")
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "observer did not start:" >&2; cat /tmp/fsb-observer-$SFX.log >&2; return 1
}
