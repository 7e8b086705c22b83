#!/usr/bin/env bash
# Time from a policy file change to enforcement, with N rules (default 10 1000 10000): the
# observer watches a policy directory for the xyz lab; the script writes a NetworkPolicy with N
# egress rules (distinct /32s and ports) and measures until the observer reports the new
# revision installed, then checks in the datapath that the policy holds (x/b's ingress denied).
# Usage: bench/policy_reload.sh [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/flowscope}
. bench/lab.sh
DIR=$(mktemp -d /tmp/fs-policy-bench.XXXXXX)
PORT=42995
cleanup() {
  [ -n "${OBS:-}" ] && kill "$OBS" 2>/dev/null && wait "$OBS" 2>/dev/null || true
  "$BIN" lab down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
"$BIN" lab down >/dev/null 2>&1 || true
"$BIN" lab up tests/labs/xyz.yaml >/dev/null
lab_observer $PORT --policy-dir "$DIR" 2>/dev/null
sleep 1
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(10 1000 10000)
for N in "${SIZES[@]}"; do
  python3 - "$DIR" "$PORT" $N <<'PY'
import json, os, subprocess, sys, time, urllib.request
d, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def revision():
    with urllib.request.urlopen("http://127.0.0.1:%s/api/v1/status" % port) as r:
        return (json.load(r).get("policy") or {}).get("revision", 0)
rules = "".join(
    "    - to: [{ipBlock: {cidr: 198.19.%d.%d/32}}]\n      ports: [{port: %d, protocol: TCP}]\n"
    % (i // 250, i % 250 + 1, 1000 + i % 50000) for i in range(n))
text = ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: egress-%d, namespace: x}\n"
        "spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n%s"
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-b, namespace: x}\n"
        "spec:\n  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Ingress]\n") % (n, rules)
before = revision()
tmp = os.path.join(d, ".policy.yaml.tmp")
open(tmp, "w").write(text)
t0 = time.monotonic()
os.rename(tmp, os.path.join(d, "policy.yaml"))
while revision() == before:
    time.sleep(0.01)
took = time.monotonic() - t0
# In the datapath: y/a -> x/b:80 is now denied.
probe = subprocess.run(["ip", "netns", "exec", "fsl-y-a", "timeout", "1", "bash", "-c",
                        "echo > /dev/tcp/198.18.1.2/80"], capture_output=True)
print("%6d rules: file written -> installed in %.3f s; x/b denied in the datapath: %s"
      % (n, took, "yes" if probe.returncode != 0 else "NO"))
# Reset to no policy before the next size (the revision read first: the observer, woken by
# inotify, may install the empty policy before this script reads it again).
b = revision()
os.remove(os.path.join(d, "policy.yaml"))
while revision() == b:
    time.sleep(0.01)
PY
done
