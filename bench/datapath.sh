#!/usr/bin/env bash
# Datapath cost: iperf3 TCP throughput across a veth pair with flowscope's programs attached vs
# not (same run, alternating), and the programs' per-packet run time from the kernel's BPF
# statistics. Usage: bench/datapath.sh [seconds-per-run] [rounds]
# IPERF_PORT (default 5201) and OBSERVER_ARGS measure a configuration, e.g. the cost of L7 HTTP
# visibility on the stream's port: IPERF_PORT=8080 OBSERVER_ARGS="--l7-visibility http:8080".
source "$(dirname "$0")/common.sh"
SECS=${1:-5}
ROUNDS=${2:-3}
PORT=${IPERF_PORT:-5201}
read -r -a OBS_ARGS <<<"${OBSERVER_ARGS:-}"
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)"; exit 1; }
make_host
iperf3 -s -B "$HOST_IP" -p "$PORT" -D --logfile /tmp/fsb-iperf-$SFX.log --pidfile /tmp/fsb-iperf-$SFX.pid
PIDS+=("$(cat /tmp/fsb-iperf-$SFX.pid)")
sleep 0.5

run_iperf() {
  ip netns exec "$NS" iperf3 -c "$HOST_IP" -p "$PORT" -t "$SECS" -J | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
}

# Throughput, alternating without and with the programs (BPF statistics off: they add two
# clock reads per program run).
base=(); with=()
for r in $(seq 1 "$ROUNDS"); do
  base+=("$(run_iperf)")
  start_observer 42990 "${OBS_ARGS[@]}"
  with+=("$(run_iperf)")
  kill "$OBS_PID"; wait "$OBS_PID" 2>/dev/null || true
done
# Per-packet run time of the attached programs, from the kernel's counters, in a separate run.
start_observer 42990 "${OBS_ARGS[@]}"
sysctl -qw kernel.bpf_stats_enabled=1
run_iperf >/dev/null
bpftool prog show -j | python3 -c '
import json,sys
for p in json.load(sys.stdin):
    if p.get("name","").startswith("flowscope_") and p.get("run_cnt"):
        print("  %-18s run_cnt %10d  avg %6.1f ns/packet" % (p["name"], p["run_cnt"], p["run_time_ns"]/p["run_cnt"]))
'
sysctl -qw kernel.bpf_stats_enabled=0
kill "$OBS_PID"; wait "$OBS_PID" 2>/dev/null || true
python3 - "${base[@]}" -- "${with[@]}" <<'PY'
import sys, statistics
a = sys.argv[1:]; i = a.index("--")
base = [float(x) for x in a[:i]]; withp = [float(x) for x in a[i+1:]]
mb, mw = statistics.median(base), statistics.median(withp)
print("iperf3 TCP, veth, %d rounds" % len(base))
print("  without programs: median %.2f Gbit/s  %s" % (mb/1e9, [round(x/1e9,2) for x in base]))
print("  with programs:    median %.2f Gbit/s  %s" % (mw/1e9, [round(x/1e9,2) for x in withp]))
print("  ratio with/without: %.3f" % (mw/mb))
PY
