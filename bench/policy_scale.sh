#!/usr/bin/env bash
# Datapath cost against policy size, and the same policy as iptables rules, in one run.
#
# The xyz lab; pod x/a is isolated for egress by one NetworkPolicy of N rules (N-1 to distinct
# /32s and ports, one allowing y/b on TCP 5201 and UDP 9000). Each round measures, for
# N = 10, 1,000, 10,000:
#   - iperf3 TCP throughput x/a -> y/b;
#   - new connections: UDP datagrams from fresh source ports x/a -> y/b:9000 (every one a new
#     connection, so every one a policy decision), as datagrams delivered per second;
# with flowscope enforcing the policy (tc programs, observer running), and with the same policy
# as iptables rules in x/a's OUTPUT chain (stateful, as real iptables policies are written:
# established traffic accepted first, then the rules in order, then DROP) and no programs.
# With flowscope, BPF statistics give the programs' run time per packet on the UDP runs.
#
# Usage: bench/policy_scale.sh [seconds-per-iperf-run] [rounds] [udp-connections]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/flowscope}
SECS=${1:-4}
ROUNDS=${2:-3}
CONNS=${3:-20000}
SIZES=(10 1000 10000)
PORT=42996
DIR=$(mktemp -d /tmp/fs-policy-scale.XXXXXX)
for tool in iperf3 iptables-restore bpftool; do
  command -v $tool >/dev/null || { echo "$tool missing (scripts/setup.sh installs it)"; exit 1; }
done
cleanup() {
  [ -n "${OBS:-}" ] && kill "$OBS" 2>/dev/null && wait "$OBS" 2>/dev/null || true
  ip netns exec fsl-x-a iptables -F OUTPUT 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  "$BIN" lab down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
"$BIN" lab down >/dev/null 2>&1 || true
"$BIN" lab up tests/labs/xyz.yaml >/dev/null
B=$(python3 -c '
import json
for e in json.load(open("/run/flowscope/lab/endpoints.json"))["endpoints"]:
    if (e["namespace"], e["pod_name"]) == ("y", "b"): print(e["ips"][0])')
mkdir -p "$DIR/policies" "$DIR/sets"

# The policy of each size, as a NetworkPolicy and as an iptables-restore file.
python3 - "$DIR/sets" "$B" "${SIZES[@]}" <<'PY'
import sys
out, b, sizes = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:]]
for n in sizes:
    cidrs = [("198.19.%d.%d" % (i // 250, i % 250 + 1), 1000 + i % 50000) for i in range(n - 1)]
    np = ["apiVersion: networking.k8s.io/v1", "kind: NetworkPolicy",
          "metadata: {name: egress-%d, namespace: x}" % n, "spec:",
          "  podSelector: {matchLabels: {pod: a}}", "  policyTypes: [Egress]", "  egress:"]
    for ip, port in cidrs:
        np.append("    - to: [{ipBlock: {cidr: %s/32}}]\n      ports: [{port: %d, protocol: TCP}]" % (ip, port))
    np.append("    - to: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]\n"
              "      ports: [{port: 5201, protocol: TCP}, {port: 9000, protocol: UDP}]")
    open("%s/np-%d.yaml" % (out, n), "w").write("\n".join(np) + "\n")
    ipt = ["*filter", ":OUTPUT ACCEPT [0:0]",
           "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A OUTPUT -o lo -j ACCEPT"]
    ipt += ["-A OUTPUT -d %s/32 -p tcp --dport %d -j ACCEPT" % c for c in cidrs]
    ipt += ["-A OUTPUT -d %s/32 -p tcp --dport 5201 -j ACCEPT" % b,
            "-A OUTPUT -d %s/32 -p udp --dport 9000 -j ACCEPT" % b, "-A OUTPUT -j DROP", "COMMIT"]
    open("%s/ipt-%d.rules" % (out, n), "w").write("\n".join(ipt) + "\n")
PY

ip netns exec fsl-y-b iperf3 -s -D --logfile "$DIR/iperf.log" --pidfile "$DIR/iperf.pid"
# A UDP sink on y/b: counts what is delivered, from the kernel's own counter.
ip netns exec fsl-y-b /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000))
while True: s.recv(64)' &
SINK=$!
trap 'kill $SINK 2>/dev/null; kill $(cat $DIR/iperf.pid) 2>/dev/null; cleanup' EXIT INT TERM
sleep 0.5

iperf() {
  ip netns exec fsl-x-a iperf3 -c "$B" -t "$SECS" -J | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
}
delivered() { ip netns exec fsl-y-b awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $2}' /proc/net/snmp; }
# Datagrams delivered per second, each from a fresh source port (a new connection).
newconns() {
  local before after t
  before=$(delivered)
  t=$(ip netns exec fsl-x-a /usr/bin/python3 - "$B" "$CONNS" <<'PY'
import socket, sys, time
dst, n = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
for sport in range(20000, 20000 + n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    try:
        s.sendto(b"x", (dst, 9000))
    except OSError:
        pass
    s.close()
print(time.monotonic() - t0)
PY
)
  sleep 0.3
  after=$(delivered)
  python3 -c "print(($after - $before) / $t)"
}
revision() { curl -s "http://127.0.0.1:$PORT/api/v1/status" | python3 -c 'import json,sys; print((json.load(sys.stdin).get("policy") or {}).get("revision", 0))'; }
apply_policy() {
  local before; before=$(revision)
  cp "$DIR/sets/np-$1.yaml" "$DIR/policies/.p.tmp"; mv "$DIR/policies/.p.tmp" "$DIR/policies/policy.yaml"
  while [ "$(revision)" = "$before" ]; do sleep 0.05; done
  sleep 0.3
}
bpf_counts() {
  bpftool prog show -j | python3 -c '
import json,sys
c=t=0
for p in json.load(sys.stdin):
    if p.get("name","").startswith("flowscope_"): c+=p.get("run_cnt",0); t+=p.get("run_time_ns",0)
print(c, t)'
}
# Records: mode size metric value
RES="$DIR/results"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  echo "none 0 tcp $(iperf)" >>"$RES"
  echo "none 0 udp $(newconns)" >>"$RES"
  "$BIN" observer --no-pin --interface 'fsl*' --endpoint-interface 'fsl*' \
    --endpoints /run/flowscope/lab/endpoints.json --policy-dir "$DIR/policies" \
    --listen 127.0.0.1:$PORT 2>"$DIR/observer.log" &
  OBS=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  # Sizes in a different order each round, so none is always first after the start.
  for i in "${!SIZES[@]}"; do
    n=${SIZES[$(((i + r) % ${#SIZES[@]}))]}
    apply_policy "$n"
    echo "flowscope $n tcp $(iperf)" >>"$RES"
    sysctl -qw kernel.bpf_stats_enabled=1
    read -r c0 t0 < <(bpf_counts)
    echo "flowscope $n udp $(newconns)" >>"$RES"
    read -r c1 t1 < <(bpf_counts)
    sysctl -qw kernel.bpf_stats_enabled=0
    echo "flowscope $n ns_per_packet $(python3 -c "print(($t1-$t0)/max(1,$c1-$c0))")" >>"$RES"
  done
  kill "$OBS"; wait "$OBS" 2>/dev/null || true; OBS=
  for n in "${SIZES[@]}"; do
    ip netns exec fsl-x-a iptables-restore <"$DIR/sets/ipt-$n.rules"
    echo "iptables $n tcp $(iperf)" >>"$RES"
    echo "iptables $n udp $(newconns)" >>"$RES"
    ip netns exec fsl-x-a iptables -F OUTPUT
  done
done
python3 - "$RES" "$ROUNDS" "$CONNS" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    mode, n, metric, v = line.split()
    rows[(mode, int(n), metric)].append(float(v))
med = lambda k: statistics.median(rows[k]) if rows.get(k) else float("nan")
print("policy scale: %s rounds, medians; new connections = %s UDP datagrams from fresh source ports" % (sys.argv[2], sys.argv[3]))
print("%-10s %7s %14s %16s %14s" % ("datapath", "rules", "TCP Gbit/s", "new conn/s", "BPF ns/packet"))
print("%-10s %7s %14.2f %16.0f %14s" % ("none", "-", med(("none", 0, "tcp")) / 1e9, med(("none", 0, "udp")), "-"))
for mode in ["flowscope", "iptables"]:
    for n in [10, 1000, 10000]:
        ns = med((mode, n, "ns_per_packet"))
        print("%-10s %7d %14.2f %16.0f %14s" % (mode, n, med((mode, n, "tcp")) / 1e9, med((mode, n, "udp")),
              "%.0f" % ns if ns == ns else "-"))
for mode in ["flowscope", "iptables"]:
    print("%s 10,000-rule / 10-rule: TCP %.3f, new connections %.3f" % (mode,
          med((mode, 10000, "tcp")) / med((mode, 10, "tcp")), med((mode, 10000, "udp")) / med((mode, 10, "udp"))))
PY
