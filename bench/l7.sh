#!/usr/bin/env bash
# The L7 proxy's cost: the same HTTP server behind an L4-only policy and behind an HTTP rule
# (every request through the observer's proxy), in one run, alternating.
#
# The L7 lab (tests/labs/l7.yaml): shop/web calls shop/api:8080 (the lab's hyper server).
# Policies: "l4" allows web -> api:8080 with no HTTP rules (connections never touch the proxy);
# "l7" allows the same with `rules.http: [{method: GET, path: "/api/.*"}]` (every request is
# judged by the proxy, and reported as two L7 flows). Per round and policy:
#   - keep-alive saturation: wrk, 1 thread, CONNS connections: requests/s, p50, p99;
#   - no keep-alive: wrk with `Connection: close` (a new connection per request);
#   - latency at half of the L4-only keep-alive saturation rate, and at LOW_RATE (default
#     5,000/s): hey at a fixed rate (CONNS workers), p50 and p99; the added p99 is L7's minus
#     L4's (hey reports the rate it achieved: on a small machine it may fall short);
# then, with the l7 policy, the observer's RSS before and with 1,000 idle kept-alive proxied
# connections (each has made one request, so its upstream connection is open too).
# Figures are medians over the rounds; ratios are L7 / L4.
#
# Usage: bench/l7.sh [seconds-per-run] [rounds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/flowscope}
SECS=${1:-5}
ROUNDS=${2:-3}
CONNS=${3:-32}
# A second, fixed rate for latency that the load generator (hey) sustains on a small machine.
LOW_RATE=${LOW_RATE:-5000}
API=198.18.7.3:8080
URL=http://$API/api/items
PORT=42997
DIR=$(mktemp -d /tmp/fs-l7-bench.XXXXXX)
for tool in wrk hey python3; do
  command -v $tool >/dev/null || { echo "$tool missing (scripts/setup.sh installs it)"; exit 1; }
done
OBS=
cleanup() {
  [ -n "$OBS" ] && kill "$OBS" 2>/dev/null && wait "$OBS" 2>/dev/null || true
  "$BIN" lab down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
"$BIN" lab down >/dev/null 2>&1 || true
"$BIN" lab up tests/labs/l7.yaml >/dev/null
mkdir -p "$DIR/l4" "$DIR/l7"
policy() { # name rules-block
  cat <<EOF
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-to-api, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: web}}]
      toPorts:
        - ports: [{port: "8080", protocol: TCP}]
$1
EOF
}
policy "" >"$DIR/l4/p.yaml"
policy '          rules:
            http:
              - {method: GET, path: "/api/.*"}' >"$DIR/l7/p.yaml"

start() { # mode
  "$BIN" observer --no-pin --interface 'fsl*' --endpoint-interface 'fsl*' \
    --endpoints /run/flowscope/lab/endpoints.json --policy-dir "$DIR/$1" \
    --listen 127.0.0.1:$PORT 2>"$DIR/observer.log" &
  OBS=$!
  for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:$PORT/readyz >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "observer did not start:" >&2; cat "$DIR/observer.log" >&2; exit 1
}
stop() { kill "$OBS"; wait "$OBS" 2>/dev/null || true; OBS=; }
in_web() { ip netns exec fsl-shop-web "$@"; }
proxied() { curl -s http://127.0.0.1:$PORT/api/v1/status | python3 -c \
  'import json,sys; print(json.load(sys.stdin).get("proxy",{}).get("requests_forwarded",0))'; }

# wrk's summary: requests/s, p50 and p99 in ms.
wrk_run() { # extra wrk args...
  in_web wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$URL" >"$DIR/wrk.out" 2>&1 || true
  python3 -c '
import re, sys
t = sys.stdin.read()
def ms(v, unit): return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p = {k: ms(v, u) for k, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", t)}
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", t)
print(rps, p["50"], p["99"], "errors" if errors else "ok")' <"$DIR/wrk.out" \
    || { echo "wrk output not understood:" >&2; cat "$DIR/wrk.out" >&2; exit 1; }
}
# hey at a fixed total rate: p50 and p99 in ms, and requests/s achieved.
hey_run() { # rate
  local per=$(( ($1 + CONNS - 1) / CONNS ))
  in_web hey -z "${SECS}s" -c "$CONNS" -q "$per" "$URL" >"$DIR/hey.out" 2>&1 || true
  python3 -c '
import re, sys
t = sys.stdin.read()
p = dict(re.findall(r"\s(50|99)% in ([\d.]+) secs", t))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
codes = re.findall(r"\[(\d+)\]\s+\d+ responses", t)
print(float(p["50"]) * 1000, float(p["99"]) * 1000, rps, "ok" if codes == ["200"] else "codes " + ",".join(codes))' <"$DIR/hey.out" \
    || { echo "hey output not understood:" >&2; cat "$DIR/hey.out" >&2; exit 1; }
}

declare -A KA KC LAT LOW
for round in $(seq 1 "$ROUNDS"); do
  for mode in l4 l7; do
    start $mode
    before=$(proxied)
    KA[$mode,$round]=$(wrk_run)
    KC[$mode,$round]=$(wrk_run -H "Connection: close")
    after=$(proxied)
    if [ $mode = l7 ] && [ "$after" -le "$before" ]; then
      echo "the l7 runs did not go through the proxy" >&2; exit 1
    fi
    if [ $mode = l4 ] && [ "$after" -ne "$before" ]; then
      echo "the l4 runs went through the proxy" >&2; exit 1
    fi
    stop
  done
  # Half of this round's L4-only keep-alive saturation rate, for both policies.
  half=$(python3 -c "print(int(float('${KA[l4,$round]}'.split()[0]) / 2))")
  for mode in l4 l7; do
    start $mode
    LAT[$mode,$round]="$(hey_run "$half") $half"
    LOW[$mode,$round]="$(hey_run "$LOW_RATE") $LOW_RATE"
    stop
  done
  echo "round $round: keep-alive l4 ${KA[l4,$round]} | l7 ${KA[l7,$round]}"
  echo "         close      l4 ${KC[l4,$round]} | l7 ${KC[l7,$round]}"
  echo "         at $half/s l4 ${LAT[l4,$round]} | l7 ${LAT[l7,$round]}"
  echo "         at $LOW_RATE/s l4 ${LOW[l4,$round]} | l7 ${LOW[l7,$round]}"
done

python3 - "$ROUNDS" <<PY
import statistics, sys
rounds = int(sys.argv[1])
ka = {"l4": [], "l7": []}; kc = {"l4": [], "l7": []}; lat = {"l4": [], "l7": []}
low = {"l4": [], "l7": []}
$(for r in $(seq 1 "$ROUNDS"); do for m in l4 l7; do
  echo "ka['$m'].append('${KA[$m,$r]}'.split())"
  echo "kc['$m'].append('${KC[$m,$r]}'.split())"
  echo "lat['$m'].append('${LAT[$m,$r]}'.split())"
  echo "low['$m'].append('${LOW[$m,$r]}'.split())"
done; done)
med = lambda rows, i: statistics.median(float(r[i]) for r in rows)
print()
print("%-34s %12s %12s %8s" % ("", "L4 only", "L7 (proxy)", "ratio"))
for name, d in (("keep-alive requests/s", ka), ("no keep-alive requests/s", kc)):
    a, b = med(d["l4"], 0), med(d["l7"], 0)
    print("%-34s %12.0f %12.0f %7.2fx" % (name, a, b, b / a))
    print("%-34s %12.2f %12.2f" % ("  p50 ms (at saturation)", med(d["l4"], 1), med(d["l7"], 1)))
    print("%-34s %12.2f %12.2f" % ("  p99 ms (at saturation)", med(d["l4"], 2), med(d["l7"], 2)))
for label, d in (("half of L4 sat.", lat), ("fixed", low)):
    rate = med(d["l4"], 4)
    p99a, p99b = med(d["l4"], 1), med(d["l7"], 1)
    print("%-34s %12.2f %12.2f" % ("p50 ms at %d/s (%s)" % (rate, label), med(d["l4"], 0), med(d["l7"], 0)))
    print("%-34s %12.2f %12.2f   added %.2f ms" % ("p99 ms at %d/s" % rate, p99a, p99b, p99b - p99a))
    print("%-34s %12.0f %12.0f" % ("  achieved requests/s", med(d["l4"], 2), med(d["l7"], 2)))
bad = [r for d in (ka, kc, lat, low) for m in d for r in d[m] if "ok" not in r]
if bad: print("NOTE: runs with errors or non-200 answers:", bad)
PY

# Memory: 1,000 idle kept-alive proxied connections.
start l7
rss() { awk '/^VmRSS/ {print $2}' /proc/$OBS/status; }
base=$(rss)
in_web python3 - "$API" "$DIR/held" <<'PY' &
import os, resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
host, port = sys.argv[1].split(":")
socks = []
for i in range(1000):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"GET /api/hold HTTP/1.1\r\nHost: api\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    assert got.startswith(b"HTTP/1.1 200"), got[:40]
    socks.append(s)
open(sys.argv[2], "w").write("held")
time.sleep(30)
PY
HOLDER=$!
for _ in $(seq 1 300); do [ -f "$DIR/held" ] && break; sleep 0.1; done
[ -f "$DIR/held" ] || { echo "could not open 1,000 proxied connections" >&2; exit 1; }
sleep 1
held=$(rss)
active=$(curl -s http://127.0.0.1:$PORT/api/v1/status | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["proxy"]["connections_active"])')
kill $HOLDER 2>/dev/null || true; wait $HOLDER 2>/dev/null || true
echo
echo "observer RSS: $base KiB idle, $held KiB with $active idle proxied connections" \
  "($(( (held - base) * 1024 / (active > 0 ? active : 1) )) bytes per connection, both sides)"
