#!/usr/bin/env bash
# Datapath cost against policy size, and the same policy as iptables and nftables rules, in one
# run.
#
# The xyz lab; pod x/a is isolated for egress by one NetworkPolicy of N rules (N-1 to distinct
# /32s and ports, one allowing y/b on TCP 7000 and 5201 and UDP 5201 and 9000). Each round
# measures, for N = 10, 1,000, 10,000:
#   - iperf3 TCP throughput x/a -> y/b;
#   - small packets: iperf3 UDP with 18-byte payloads (64-byte frames), unlimited rate, as
#     packets received per second;
#   - new connections: UDP datagrams from fresh source ports x/a -> y/b:9000 (every one a new
#     connection, so every one a policy decision), as datagrams delivered per second;
#   - TCP connections: connect and close (RST, no TIME_WAIT) to y/b:7000, where two processes
#     accept and close, from two processes, per second;
# with no programs and no rules; with flowscope's programs and no policy; with flowscope
# enforcing the policy (tc programs, observer running); with the same policy as iptables rules
# in x/a's OUTPUT chain and as nftables rules in an output chain (stateful, as real policies are
# written: established traffic accepted first, then the rules in order, then drop), and as one
# nftables rule looking up a set of (address, protocol, port); rules without programs. With
# flowscope, BPF statistics give the programs' run time per packet on the new-connection runs.
# Ratios against no programs come from the same round.
#
# Usage: bench/policy_scale.sh [seconds-per-run] [rounds] [udp-connections, at most 10,000]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/flowscope}
. bench/lab.sh
SECS=${1:-4}
ROUNDS=${2:-3}
CONNS=${3:-10000}
[ "$CONNS" -le 10000 ] || { echo "at most 10,000 connections per run" >&2; exit 2; }
SIZES=(10 1000 10000)
PORT=42996
DIR=$(mktemp -d /tmp/fs-policy-scale.XXXXXX)
for tool in iperf3 iptables-restore nft bpftool; do
  command -v $tool >/dev/null || { echo "$tool missing (scripts/setup.sh installs it)"; exit 1; }
done
cleanup() {
  [ -n "${OBS:-}" ] && kill "$OBS" 2>/dev/null && wait "$OBS" 2>/dev/null || true
  ip netns exec fsl-x-a iptables -F OUTPUT 2>/dev/null || true
  ip netns exec fsl-x-a nft flush ruleset 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  "$BIN" lab down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
"$BIN" lab down >/dev/null 2>&1 || true
"$BIN" lab up tests/labs/xyz.yaml >/dev/null
B=$(pod_ip y b)
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
    np.append("    - to: [{namespaceSelector: {matchLabels: {ns: 'y'}}, podSelector: {matchLabels: {pod: b}}}]\n"
              "      ports: [{port: 7000, protocol: TCP}, {port: 5201, protocol: TCP}, {port: 5201, protocol: UDP}, "
              "{port: 9000, protocol: UDP}]")
    open("%s/np-%d.yaml" % (out, n), "w").write("\n".join(np) + "\n")
    allowed = [(ip, "tcp", port) for ip, port in cidrs] + [
        (b, "tcp", 7000), (b, "tcp", 5201), (b, "udp", 5201), (b, "udp", 9000)]
    ipt = ["*filter", ":OUTPUT ACCEPT [0:0]",
           "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A OUTPUT -o lo -j ACCEPT"]
    ipt += ["-A OUTPUT -d %s/32 -p %s --dport %d -j ACCEPT" % a for a in allowed]
    ipt += ["-A OUTPUT -j DROP", "COMMIT"]
    open("%s/ipt-%d.rules" % (out, n), "w").write("\n".join(ipt) + "\n")
    head = ["flush ruleset", "table inet flowscope_bench {"]
    chain = ["  chain output {", "    type filter hook output priority filter; policy accept;",
             "    ct state established,related accept", "    oif lo accept"]
    nft = head + chain + ["    ip daddr %s %s dport %d accept" % a for a in allowed] + ["    drop", "  }", "}"]
    open("%s/nft-%d.rules" % (out, n), "w").write("\n".join(nft) + "\n")
    elements = ", ".join("%s . %s . %d" % a for a in allowed)
    nft_set = head + ["  set allowed {", "    type ipv4_addr . inet_proto . inet_service",
                      "    elements = { %s }" % elements, "  }"] + chain + [
        "    ip daddr . meta l4proto . th dport @allowed accept", "    drop", "  }", "}"]
    open("%s/nftset-%d.rules" % (out, n), "w").write("\n".join(nft_set) + "\n")
PY

ip netns exec fsl-y-b iperf3 -s -D --logfile "$DIR/iperf.log" --pidfile "$DIR/iperf.pid"
# A UDP sink on y/b: counts what is delivered, from the kernel's own counter.
ip netns exec fsl-y-b /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000))
while True: s.recv(64)' &
SINK=$!
# A TCP server on y/b:7000 that accepts and closes, in two processes (SO_REUSEPORT).
for _ in 1 2; do
  ip netns exec fsl-y-b /usr/bin/python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", 7000)); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()' &
  ACCEPTORS="${ACCEPTORS:-} $!"
done
trap 'kill $SINK $ACCEPTORS 2>/dev/null; kill $(cat $DIR/iperf.pid) 2>/dev/null; cleanup' EXIT INT TERM
sleep 0.5

iperf() {
  ip netns exec fsl-x-a iperf3 -c "$B" -t "$SECS" -J | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
}
# 64-byte frames (18-byte UDP payloads) at an unlimited rate: packets received per second.
small_packets() {
  ip netns exec fsl-x-a iperf3 -c "$B" -u -l 18 -b 0 -t "$SECS" -J | python3 -c '
import json, sys
end = json.load(sys.stdin)["end"]
r = end.get("sum_received") or end["sum"]
lost = r.get("lost_packets", end["sum"].get("lost_packets", 0))
print((r["packets"] - lost) / r["seconds"])'
}
# TCP connect and close (with RST: no TIME_WAIT) to y/b:7000 from two processes: per second.
tcp_connections() {
  ip netns exec fsl-x-a /usr/bin/python3 - "$B" "$SECS" <<'PY'
import multiprocessing, socket, struct, sys, time
dst, secs = sys.argv[1], float(sys.argv[2])
def worker(q):
    n, end = 0, time.monotonic() + secs
    linger = struct.pack("ii", 1, 0)
    while time.monotonic() < end:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.settimeout(1)
        try:
            s.connect((dst, 7000))
            n += 1
        except OSError:
            pass
        s.close()
    q.put(n)
q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=worker, args=(q,)) for _ in range(2)]
for p in ps: p.start()
total = sum(q.get() for _ in ps)
for p in ps: p.join()
print(total / secs)
PY
}
delivered() { ip netns exec fsl-y-b awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $2}' /proc/net/snmp; }
# Datagrams delivered per second, each from a fresh source port (a new connection). flowscope's
# conntrack keeps a UDP connection until it is evicted, so each run of one observer's lifetime
# takes its own range of source ports (six ranges of CONNS ports from 1100).
RUNS=0
newconns() {
  local before after t base
  base=$((1100 + (RUNS % 6) * CONNS)); RUNS=$((RUNS + 1))
  before=$(delivered)
  t=$(ip netns exec fsl-x-a /usr/bin/python3 - "$B" "$CONNS" "$base" <<'PY'
import socket, sys, time
dst, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
for sport in range(base, base + n):
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
  # A policy the observer refused would leave the runs unenforced.
  curl -s "http://127.0.0.1:$PORT/api/v1/status" | python3 -c '
import json, sys
p = json.load(sys.stdin)["policy"]
if p["errors"] or p["policies"] != 1:
    sys.exit("the policy was not installed: %s" % p["errors"])'
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
# Every measure of one datapath and size, as records.
measure() {
  echo "$1 $2 tcp $(iperf)" >>"$RES"
  echo "$1 $2 pps64 $(small_packets)" >>"$RES"
  echo "$1 $2 tcpconn $(tcp_connections)" >>"$RES"
  if [ "$1" = flowscope ]; then
    sysctl -qw kernel.bpf_stats_enabled=1
    read -r c0 t0 < <(bpf_counts)
  fi
  newconns >"$DIR/udp.out"
  echo "$1 $2 udp $(cat "$DIR/udp.out")" >>"$RES"
  if [ "$1" = flowscope ]; then
    read -r c1 t1 < <(bpf_counts)
    sysctl -qw kernel.bpf_stats_enabled=0
    echo "$1 $2 ns_per_packet $(python3 -c "print(($t1-$t0)/max(1,$c1-$c0))")" >>"$RES"
  fi
}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  measure none 0
  rm -f "$DIR/policies/policy.yaml"
  lab_observer $PORT --policy-dir "$DIR/policies" 2>"$DIR/observer.log"
  # The programs on every interface, no policy: what observing alone costs.
  sleep 1
  measure flowscope 0
  # Sizes in a different order each round, so none is always first after the start.
  for i in "${!SIZES[@]}"; do
    n=${SIZES[$(((i + r) % ${#SIZES[@]}))]}
    apply_policy "$n"
    measure flowscope "$n"
  done
  kill "$OBS"; wait "$OBS" 2>/dev/null || true; OBS=
  for n in "${SIZES[@]}"; do
    ip netns exec fsl-x-a iptables-restore <"$DIR/sets/ipt-$n.rules"
    measure iptables "$n"
    ip netns exec fsl-x-a iptables -F OUTPUT
    ip netns exec fsl-x-a nft -f "$DIR/sets/nft-$n.rules"
    measure nftables "$n"
    ip netns exec fsl-x-a nft -f "$DIR/sets/nftset-$n.rules"
    measure nftables-set "$n"
    ip netns exec fsl-x-a nft flush ruleset
  done
done
python3 - "$RES" "$ROUNDS" "$CONNS" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    mode, n, metric, v = line.split()
    rows[(mode, int(n), metric)].append(float(v))
def stats(k):
    v = sorted(rows.get(k, []))
    return (v[0], statistics.median(v), v[-1]) if v else None
def med(k):
    s = stats(k)
    return s[1] if s else float("nan")
print("policy scale: %s rounds, min/median/max; new connections = %s UDP datagrams from fresh source ports"
      % (sys.argv[2], sys.argv[3]))
metrics = [("tcp", "TCP Gbit/s", 1e9), ("pps64", "64-byte pkt/s", 1), ("udp", "new UDP conn/s", 1),
           ("tcpconn", "TCP conn/s", 1)]
print("%-13s %6s " % ("datapath", "rules") + " ".join("%28s" % m[1] for m in metrics) + " %16s" % "BPF ns/packet")
def line(mode, n, label):
    cells = []
    for metric, _, scale in metrics:
        s = stats((mode, n, metric))
        cells.append("%28s" % ("-" if s is None else "%.3g / %.3g / %.3g" % tuple(x / scale for x in s)))
    ns = stats((mode, n, "ns_per_packet"))
    print("%-13s %6s " % (mode, label) + " ".join(cells) + " %16s" % ("-" if ns is None else "%.0f" % ns[1]))
line("none", 0, "-")
line("flowscope", 0, "none")
for mode in ["flowscope", "iptables", "nftables", "nftables-set"]:
    for n in [10, 1000, 10000]:
        line(mode, n, str(n))
print("Ratios of medians against no programs and no rules (target at 10,000 rules: >= 0.95 for new connections and 64-byte packets):")
for mode, n in [("flowscope", 0)] + [(m, n) for m in ["flowscope", "iptables", "nftables", "nftables-set"] for n in [10, 1000, 10000]]:
    print("  %-13s %6s: " % (mode, n or "none") + ", ".join(
        "%s %.3f" % (metric, med((mode, n, metric)) / med(("none", 0, metric))) for metric, _, _ in metrics))
for metric in ["pps64", "udp"]:
    r = med(("flowscope", 10000, metric)) / med(("none", 0, metric))
    print("target %s with flowscope and 10,000 rules >= 0.95x no programs: %.3f -> %s" % (metric, r, "met" if r >= 0.95 else "MISSED"))
PY
