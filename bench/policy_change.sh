#!/usr/bin/env bash
# Time from changing one rule among RULES (default 10,000, in FILES files of one NetworkPolicy
# each, default 100) to the datapath enforcing the change, measured by the datapath itself: in
# the xyz lab every policy isolates namespace x's egress, and one rule of the first file (a pod
# selector: an ipBlock does not select pods) moves x/a's access to y/a between TCP ports 80
# and 81. Each round rewrites that file (atomic rename)
# and probes, from x/a, a new connection to the newly allowed port every few milliseconds
# (5 ms connect timeout, fresh source port: each a policy decision) until one connects; then
# checks that the old port is denied. Per round the observer's log gives what the install
# parsed, compiled and wrote. Usage: bench/policy_change.sh [RULES] [FILES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/flowscope}
. bench/lab.sh
RULES=${1:-10000}
FILES=${2:-100}
ROUNDS=${3:-15}
DIR=$(mktemp -d /tmp/fs-policy-change.XXXXXX)
LOG=$DIR.log
PORT=42996
cleanup() {
  [ -n "${OBS:-}" ] && kill "$OBS" 2>/dev/null && wait "$OBS" 2>/dev/null || true
  "$BIN" lab down >/dev/null 2>&1 || true
  rm -rf "$DIR" "$LOG"
}
trap cleanup EXIT INT TERM
"$BIN" lab down >/dev/null 2>&1 || true
"$BIN" lab up tests/labs/xyz.yaml >/dev/null
export RUST_LOG=info
lab_observer $PORT --policy-dir "$DIR" 2>"$LOG"
YA=$(pod_ip y a)
ip netns exec fsl-x-a python3 - "$DIR" "$RULES" "$FILES" "$ROUNDS" "$YA" <<'PY'
import os, socket, statistics, sys, time
d, rules, files, rounds, ya = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
per = rules // files
def write(i, moving_port):
    out = ["apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: egress-%d, namespace: x}\n"
           "spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n" % i]
    for j in range(per):
        g = i * per + j
        if g == 0:
            out.append("    - to: [{namespaceSelector: {matchLabels: {ns: 'y'}}, podSelector: {matchLabels: {pod: a}}}]\n"
                       "      ports: [{port: %d, protocol: TCP}]\n" % moving_port)
        else:
            out.append("    - to: [{ipBlock: {cidr: 198.19.%d.%d/32}}]\n      ports: [{port: %d, protocol: TCP}]\n"
                       % (g // 250, g % 250 + 1, 1000 + g % 50000))
    tmp = os.path.join(d, ".p%d.tmp" % i)
    with open(tmp, "w") as f:
        f.write("".join(out))
    os.rename(tmp, os.path.join(d, "p%03d.yaml" % i))
def connects(port, timeout=0.005):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ya, port))
        return True
    except OSError:
        return False
    finally:
        s.close()
def until_connects(port, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        t = time.monotonic()
        if connects(port):
            return t
    return None
port = 80
for i in range(files):
    write(i, port)
t0 = time.monotonic()
# The policy holds once x/a's egress is isolated (81 denied) and the moving rule allows 80.
while connects(81, 0.05) or not connects(port, 0.05):
    if time.monotonic() - t0 > 120:
        sys.exit("the first install never isolated x/a's egress with y/a:%d allowed" % port)
    time.sleep(0.01)
print("%d rules in %d files: first install enforced %.2f s after the last file" % (per * files, files, time.monotonic() - t0))
time.sleep(2)
took = []
for r in range(rounds):
    new = 81 if port == 80 else 80
    t0 = time.monotonic()
    write(0, new)
    t = until_connects(new, 10)
    if t is None:
        sys.exit("round %d: port %d never allowed" % (r + 1, new))
    took.append((t - t0) * 1e3)
    if connects(port, 0.2):
        sys.exit("round %d: port %d still connects after the change" % (r + 1, port))
    port = new
    print("round %2d: one rule moved to port %d: enforced after %6.1f ms; the old port denied" % (r + 1, new, took[-1]))
    time.sleep(1)
print("one rule changed among %d: file renamed -> enforced min %.1f / median %.1f / max %.1f ms over %d rounds"
      % (per * files, min(took), statistics.median(took), max(took), len(took)))
PY
echo "The observer's installs (the first is the whole policy, then one per round):"
grep "Policies installed" "$LOG" | sed -E 's/.*Policies installed//; s/\x1b\[[0-9;]*m//g' | tail -n $((ROUNDS + 1)) | head -n $((ROUNDS + 1))
