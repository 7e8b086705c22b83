#!/usr/bin/env bash
# Soak: the whole system under steady load for a long time, every flow accounted for.
#   bash bench/soak.sh [MINUTES] [RATE]     (default 30 minutes, 2000 new flows/s)
#
# - The xyz lab (tests/labs/xyz.yaml: 9 pods and their own traffic) with the
#   x-deny-allow-y policies enforced, and y/a opening RATE new UDP flows a second to x/b
#   (each datagram to a new port: a new flow, a policy verdict and a drop or trace).
# - The observer (pinned, exporter on, 65,535 flows kept, metrics), a relay in front of it.
# - Subscribers from the observer's start, each asking for the whole history and then
#   following: 64 over the observer's WebSocket, one over its gRPC, one over the relay's
#   gRPC (cli/examples/flow_count.rs: counts flows and reported losses).
# Every 30 s it samples the observer's and the relay's RSS and open descriptors and the
# observer's counters into bench/out/soak-<time>.csv. At the end, the traffic stops, and it
# checks:
# - memory: neither process's RSS in the second half of the run exceeds its first-half
#   peak by more than 10 % + 8 MiB; descriptors end where they were after start (+4);
# - accounting: for every subscriber, flows delivered + losses reported = the flows the
#   observer stored; for the exporter, flows written + lost = stored; the datapath's events
#   = decoded + lost in the ring buffer.
# It exits 1 if any of these fails. Run as root on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
RATE=${2:-2000}
SAMPLE=30
BIN=./target/release/flowscope
COUNT=./target/release/examples/flow_count
OUT=bench/out
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
CSV="$OUT/soak-$STAMP.csv"
WORK=$(mktemp -d /tmp/flowscope-soak.XXXXXX)
ROOT=/sys/fs/bpf/flowscope-soak
OBS=127.0.0.1:47100
RELAY=127.0.0.1:47101
METRICS=127.0.0.1:47102

cargo build --release -q --bin flowscope -p flowscope
cargo build --release -q -p flowscope-cli --example flow_count

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$BIN" lab down >/dev/null 2>&1 || true
  "$BIN" observer --cleanup --bpf-root "$ROOT" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

status() { curl -sf "http://$OBS/api/v1/status"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
wait_for() { # wait_for WHAT SECONDS COMMAND...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "soak: $what did not happen within $secs s" >&2; exit 1
}

"$BIN" lab down >/dev/null 2>&1 || true
"$BIN" observer --cleanup --bpf-root "$ROOT" >/dev/null 2>&1 || true
"$BIN" lab up tests/labs/xyz.yaml >/dev/null
mkdir -p "$WORK/policies"
cp tests/policies/x-deny-allow-y/*.yaml "$WORK/policies/"
"$BIN" observer --interface 'fsl*' --endpoint-interface 'fsl*' \
  --endpoints /run/flowscope/lab/endpoints.json --policy-dir "$WORK/policies" \
  --bpf-root "$ROOT" --listen "$OBS" --metrics-listen "$METRICS" --max-flows 65535 \
  --export-file "$WORK/flows.json" --export-file-max-size-mb 50 --export-file-max-backups 2 \
  2>"$WORK/observer.log" &
OBS_PID=$!
PIDS+=("$OBS_PID")
wait_for "the observer ready" 30 curl -sf "http://$OBS/readyz"
"$BIN" relay --listen "$RELAY" --no-metrics --peer "$OBS" 2>"$WORK/relay.log" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
wait_for "the relay ready" 30 curl -sf "http://$RELAY/readyz"

# From the start, with the whole history: every flow the observer stores reaches each one
# or is reported lost to it.
"$COUNT" "ws://$OBS" 0 0 64 65535 >"$WORK/ws.counts" 2>"$WORK/ws.err" &
WS_PID=$!
"$COUNT" "grpc://$OBS" 0 0 1 65535 >"$WORK/grpc.counts" 2>"$WORK/grpc.err" &
GRPC_PID=$!
"$COUNT" "grpc://$RELAY" 0 0 1 65535 >"$WORK/relay.counts" 2>"$WORK/relay.err" &
RELAY_COUNT_PID=$!
PIDS+=("$WS_PID" "$GRPC_PID" "$RELAY_COUNT_PID")
wait_for "the 66 subscribers" 30 sh -c "[ \$(curl -sf http://$OBS/api/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"subscribers\"])') -ge 66 ]"

# RATE new flows a second from y/a to x/b: each datagram to the next port.
ip netns exec fsl-y-a python3 - "$RATE" <<'EOF' &
import socket, sys, time
rate = int(sys.argv[1]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
port, tick, t = 1024, 0.01, time.monotonic()
while True:
    for _ in range(max(1, rate // 100)):
        s.sendto(b"soak", ("198.18.1.2", port)); port = port + 1 if port < 65535 else 1024
    t += tick; time.sleep(max(0.0, t - time.monotonic()))
EOF
GEN_PID=$!
PIDS+=("$GEN_PID")

echo "seconds,observer_rss_kib,observer_fds,relay_rss_kib,relay_fds,seen_flows,ring_lost,datapath_events,datapath_events_lost,export_flows,export_lost" >"$CSV"
START=$(date +%s)
END=$((START + MINUTES * 60))
BASE_OBS_FDS=$(fds "$OBS_PID"); BASE_RELAY_FDS=$(fds "$RELAY_PID")
while :; do
  now=$(date +%s)
  s=$(status)
  echo "$((now - START)),$(rss_kib "$OBS_PID"),$(fds "$OBS_PID"),$(rss_kib "$RELAY_PID"),$(fds "$RELAY_PID"),$(echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(",".join(str(x) for x in (d["seen_flows"], d["ring_lost_events"], d["datapath"]["events"], d["datapath"]["events_lost"], d["export"]["flows"], d["export"]["lost"])))')" >>"$CSV"
  tail -n 1 "$CSV"
  [ "$now" -ge "$END" ] && break
  sleep $(( SAMPLE < END - now ? SAMPLE : END - now ))
done

# Quiesce: the generator and the lab's traffic stop, then the observer's counters settle.
kill "$GEN_PID"; wait "$GEN_PID" 2>/dev/null || true
"$BIN" lab down >/dev/null
last=""
for _ in $(seq 100); do
  cur=$(status | field '["seen_flows"]')
  [ "$cur" = "$last" ] && break
  last=$cur; sleep 2
done
# The exporter catches up (or counts what it lost).
for _ in $(seq 60); do
  status | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["export"]["flows"] + d["export"]["lost"] >= d["seen_flows"] else 1)' && break
  sleep 1
done
FINAL=$(status)
# Each subscriber reads on until its stream is quiet (lagging ones catch up or are told what
# they lost), then prints its counts.
kill -INT "$WS_PID" "$GRPC_PID" "$RELAY_COUNT_PID"
wait "$WS_PID" "$GRPC_PID" "$RELAY_COUNT_PID" 2>/dev/null || true
OBS_FDS_END=$(fds "$OBS_PID"); RELAY_FDS_END=$(fds "$RELAY_PID")

python3 - "$CSV" "$WORK" "$BASE_OBS_FDS" "$BASE_RELAY_FDS" "$OBS_FDS_END" "$RELAY_FDS_END" "$FINAL" "$(curl -sf "http://$RELAY/api/v1/status")" <<'EOF'
import csv, json, sys
path, work, obs_fd0, relay_fd0, obs_fd1, relay_fd1, final, relay = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
final, relay = json.loads(final), json.loads(relay)
ok = True
def check(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok &= cond
half = len(rows) // 2
for proc in ("observer", "relay"):
    first = max(int(r[f"{proc}_rss_kib"]) for r in rows[:max(half, 1)])
    second = max(int(r[f"{proc}_rss_kib"]) for r in rows[half:])
    check(second <= first * 1.10 + 8192,
          f"{proc} RSS: first-half peak {first / 1024:.1f} MiB, second-half peak {second / 1024:.1f} MiB")
check(int(obs_fd1) <= int(obs_fd0) + 4, f"observer descriptors: {obs_fd0} after start, {obs_fd1} at the end")
check(int(relay_fd1) <= int(relay_fd0) + 4, f"relay descriptors: {relay_fd0} after start, {relay_fd1} at the end")
seen = final["seen_flows"]
d = final["datapath"]
# Events the ring buffer lost are reported to every subscriber as lost events too.
expected = seen + d["events_lost"]
print(f"     stored by the observer: {seen} flows over {rows[-1]['seconds']} s "
      f"({seen / max(1, int(rows[-1]['seconds'])):.0f}/s); ring overwrote {final['ring_lost_events']} "
      f"before some subscriber read them")
for name in ("ws", "grpc", "relay"):
    lines = [l for l in open(f"{work}/{name}.counts") if l.startswith("flows=")]
    for i, l in enumerate(lines):
        kv = dict(p.split("=") for p in l.split())
        flows, lost = int(kv["flows"]), int(kv["lost"])
        if i < 2 or flows + lost != expected:
            check(flows + lost == expected, f"{name} subscriber {i}: {flows} delivered + {lost} reported lost = {flows + lost} of {seen} flows + {d['events_lost']} events lost in the datapath")
    if len(lines) > 2:
        bad = sum(1 for l in lines if sum(int(p.split("=")[1]) for p in l.split()[:2]) != expected)
        check(bad == 0, f"{name}: all {len(lines)} subscribers account for every flow")
e = final["export"]
check(e["flows"] + e["lost"] == seen, f"exporter: {e['flows']} written + {e['lost']} lost = {e['flows'] + e['lost']} of {seen} (rotations {e['rotations']}, write errors {e['write_errors']})")
check(d["events"] == final["events_decoded"] + final["malformed_events"],
      f"datapath: {d['events']} events written, {final['events_decoded']} decoded, {d['events_lost']} lost in the ring buffer (reported)")
print("soak:", "every check passed" if ok else "FAILED", f"({path})")
sys.exit(0 if ok else 1)
EOF
