#!/usr/bin/env bash
# The Kubernetes source at the size of issue 15: 10,000 pods, 1,000 namespaces and 1,000
# NetworkPolicies through the watch of a real kube-apiserver (scripts/kube-apiserver.sh). Measures
# the observer's memory for the Kubernetes state and the time from a change in the API (a pod's
# label, a policy) to enforcement in the datapath, probed with real connections in the L7 lab:
# first with an empty cluster, then at full size.
#
# 1. etcd and kube-apiserver in a temporary directory, and the namespace `bench`: pods client,
#    other and server mapped (by status.podIP) onto the L7 lab's web, batch and api pods, on the
#    observer's node, and the NetworkPolicy bench/server-ingress admitting pods labelled
#    access=true to server:8080.
# 2. The lab and an observer with --kubeconfig: its RSS once its policy is installed, and latency
#    rounds (bench/kube_load.py rounds): the client's label added and removed, then the policy's
#    port moved off 8080 and back, each followed by a new connection from the client's namespace
#    every 5 ms until the verdict flips; min/median/max per change and direction, and the stages
#    from the observer's log (RUST_LOG=info).
# 3. That observer stopped; the cluster loaded (PODS pods in NAMESPACES namespaces, one in 100 on
#    the observer's node, addresses 198.18.16.1-198.18.55.250; POLICIES policies of five shapes);
#    a new observer syncing from the full lists: time to its first policy install, RSS (the
#    difference to step 2 is the memory for the Kubernetes state), the time until its status
#    shows that revision (the work after an install, before the policy loop takes the next
#    change), the observer's CPU per stage with perf (during the sync and for 10 s after), and
#    the same rounds, each change given LIMIT seconds (default 120).
#
# Usage: bench/kubernetes.sh [ROUNDS]   (default 7; PODS, NAMESPACES, POLICIES resize the cluster)
# About 10 minutes on 2 cores. Traffic stays in the lab's namespaces and on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-7}
PODS=${PODS:-10000}
NAMESPACES=${NAMESPACES:-1000}
POLICIES=${POLICIES:-1000}
LIMIT=${LIMIT:-120}
BIN=${BIN:-./target/release/flowscope}
KUBE_DIR=${KUBE_DIR:-/opt/flowscope/kube}
LAB=tests/labs/l7.yaml
NODE=bench-node
# Only the standard library: the system's Python 3 is enough.
PY="python3 bench/kube_load.py"
# RSS is read this long after settling (the policy installed and in the status): what the sync
# allocated for a moment is freed by then.
RSS_AFTER=5
# The source's debug line for a Cilium kind looked for and not served (its CRD absent).
export RUST_LOG=info,flowscope_kubernetes::watch=debug

[ "$(id -u)" = 0 ] || { echo "run as root (the lab and the observer's programs need it)" >&2; exit 1; }
if [ ! -x "$KUBE_DIR/bin/kube-apiserver" ] || [ ! -x "$KUBE_DIR/bin/etcd" ]; then
  echo "no kube-apiserver/etcd in $KUBE_DIR/bin: run scripts/setup.sh (or scripts/kube-apiserver.sh build)" >&2
  exit 1
fi
if [ ! -x "$BIN" ]; then
  [ -f ui/dist/index.html ] || bash scripts/build-ui.sh
  cargo build --release --bin flowscope
fi

RUN=$(mktemp -d /tmp/fs-kube-bench.XXXXXX)
REPORT=$RUN/report
OBS=
LAB_UP=
log() { printf '[kubernetes.sh] %s\n' "$*" >&2; }
# Figures go to stdout and into the report repeated at the end.
out() { printf '%s\n' "$*" | tee -a "$REPORT"; }

# SIGTERM, then SIGKILL: a policy loop deep in one revision only stops at its end.
stop_observer() {
  [ -n "$OBS" ] || return 0
  kill "$OBS" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$OBS" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$OBS" 2>/dev/null || true
  wait "$OBS" 2>/dev/null || true
  OBS=
}
# etcd and the API server are not this shell's children (the start script's): killed by their
# pid files, then waited for.
kill_pidfile() {
  local f=$RUN/kube/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  stop_observer
  for p in ${PERF_SYNC:-} ${PERF_ROUNDS:-}; do kill -INT "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  kill_pidfile apiserver
  kill_pidfile etcd
  # Only a lab this run brought up, and only while it is still this run's.
  [ -n "$LAB_UP" ] && lab_intact && "$BIN" lab down >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT INT TERM

# The lab's interfaces and indexes, to notice another user's `lab down`/`lab up` replacing it.
lab_record() { for f in /sys/class/net/fsl*; do echo "$(basename "$f") $(cat "$f/ifindex")"; done > "$RUN/lab"; }
lab_intact() {
  local name index
  while read -r name index; do
    [ "$(cat "/sys/class/net/$name/ifindex" 2>/dev/null)" = "$index" ] || return 1
  done < "$RUN/lab"
}
lab_check() { lab_intact || { out "!! the lab was replaced during the run (another user's lab down/up): figures void"; exit 1; }; }

# Free loopback ports: the API server's, the observer's, and etcd's two (client, peer).
read -r API_PORT OBS_PORT ETCD_PORT < <(python3 - <<'PY'
import random, socket
def free(p):
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
picked = []
while len(picked) < 3:
    p = random.randrange(20000, 30000)
    if free(p) and (len(picked) < 2 or free(p + 1)) and p not in picked:
        picked.append(p)
print(*picked)
PY
)
URL=http://127.0.0.1:$OBS_PORT
KC=$RUN/kube/kubeconfig

start_observer() { # LOG
  STARTED=$(date +%s.%N)
  "$BIN" observer --no-pin --interface 'fsl*' --endpoint-interface 'fsl*' \
    --kubeconfig "$KC" --node-name "$NODE" --listen "127.0.0.1:$OBS_PORT" >/dev/null 2>"$1" &
  OBS=$!
}
rss_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$OBS/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
# Registries built, policy revisions installed and Cilium kinds found absent, by the log.
churn() {
  out "  observer log over its $(python3 -c "import time; print(round(time.time() - $STARTED))") s: $(grep -c 'Endpoints from the Kubernetes API' "$1") registries built, $(grep -c 'Policies installed' "$1") policy revisions installed, $(grep -c 'Not served' "$1") 'Not served' retries of the absent Cilium CRDs (each publishing nothing)"
}

# perf_shares DATA TITLE [UNTIL] [CHANGES]: the inclusive share of the observer's samples in each
# stage of the Kubernetes source and the policy loop; samples until UNTIL (an epoch time: perf
# records with the wall clock for that); with CHANGES, each stage's CPU time per change too
# (samples at 99 Hz: each stands for 1/99 s of CPU).
STAGES='flowscope_kubernetes::watch::run|flowscope_kubernetes::watch::snapshot|flowscope_kubernetes::watch::pod_info|flowscope_observer::kubernetes::watch_cluster|flowscope_observer::kubernetes::endpoint_specs|flowscope_observer::kubernetes::route_interface|flowscope_observer::kubernetes::registry|flowscope_observer::endpoints::Registry::build|flowscope_observer::endpoints::hubble_labels|flowscope_observer::watch_policies|flowscope_policy::PolicySet::add_file|flowscope_observer::policy::world|flowscope_policy::compile::compile_for|flowscope_policy::compile::Universe::new|flowscope_observer::policy::install|flowscope_observer::source::datapath::Datapath::install_policy|flowscope_observer::source::datapath::Datapath::ipcache_insert|flowscope_observer::policy::selections|flowscope_policy::verdict::selections|flowscope_observer::run_pipeline|flowscope_observer::api::status'
perf_shares() {
  local until=${3:-} changes=${4:-} total
  # Samples, counted exactly (the report's header rounds them to thousands).
  total=$(perf report -i "$1" ${until:+--time ",$until"} -n --no-children --sort pid --stdio -g none 2>/dev/null \
    | awk '!/^#/ && NF >= 3 { n += $2 } END { print n + 0 }')
  out "  $2 (perf record -F 99 --call-graph dwarf,65528, $total samples; inclusive share${changes:+, CPU ms per change over $changes changes}):"
  perf report -i "$1" ${until:+--time ",$until"} --children --stdio --sort symbol -g none \
      --percent-limit 0.5 2>/dev/null \
    | awk -v re="^($STAGES)$" -v changes="$changes" -v total="$total" '
        $3 == "[.]" {
          # An async fn is its closure: named without it, counted once (the outermost).
          name = $4; while (sub(/::[{][{]closure[}][}]$/, "", name)) {}
          if (name !~ re || seen[name]++) next
          share = $1; sub(/%/, "", share)
          if (changes) printf "    %7s %7.1f ms  %s\n", $1, share / 100 * total * 1000 / 99 / changes, name
          else printf "    %7s  %s\n", $1, name
        }' | sort -rn | tee -a "$REPORT"
  # And the functions the samples were in (self time), whatever called them.
  out "    where the samples were (self share, top 8):"
  perf report -i "$1" ${until:+--time ",$until"} --no-children --stdio --sort dso,symbol -g none \
      --percent-limit 1 2>/dev/null \
    | awk '!/^#/ && NF >= 4 { $3 = ""; sub(/  +/, " "); sub(/ - -$/, ""); printf "    %s\n", $0 }' | head -8 | tee -a "$REPORT"
}

out "== bench/kubernetes.sh $ROUNDS (PODS=$PODS NAMESPACES=$NAMESPACES POLICIES=$POLICIES LIMIT=$LIMIT): $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs, $("$KUBE_DIR/bin/kube-apiserver" --version), flowscope at $(git rev-parse --short HEAD), binary of $(date -u -r "$BIN" +%FT%TZ) =="

log "etcd and kube-apiserver"
bash scripts/kube-apiserver.sh start "$RUN/kube" "$ETCD_PORT" "$API_PORT"
$PY bench "$KC" "$NODE"

# Another lab (a test's) is left alone: wait for it to go.
for i in $(seq 1 60); do
  ip netns | grep -q '^fsl-' || break
  [ "$i" = 60 ] && { echo "another lab stayed up for 5 minutes (ip netns | grep fsl-): not taking it down" >&2; exit 1; }
  [ "$i" = 1 ] && log "another lab is up; waiting for it to go"
  sleep 5
done
LAB_UP=1
"$BIN" lab up "$LAB" >/dev/null
lab_record

# --- The empty cluster: the namespace bench alone (3 pods, 1 policy). ---
log "observer against the empty cluster"
start_observer "$RUN/observer-empty.log"
out "empty cluster (namespace bench: 3 pods, 1 NetworkPolicy):"
out "  observer $($PY settle "$URL" 3 1 "$RUN/observer-empty.log" --since "$STARTED")"
sleep "$RSS_AFTER"
RSS_EMPTY=$(rss_kb VmRSS)
out "  observer VmRSS ${RSS_AFTER} s after settling: $(mb "$RSS_EMPTY") (VmHWM $(mb "$(rss_kb VmHWM)"))"
$PY rounds "$KC" "$URL" "$RUN/observer-empty.log" "empty cluster" --rounds "$ROUNDS" \
  --pid "$OBS" --limit 30 --lab "$RUN/lab" | tee -a "$REPORT"
churn "$RUN/observer-empty.log"
out "  observer VmRSS after the rounds: $(mb "$(rss_kb VmRSS)")"
lab_check
stop_observer

# --- The full cluster. ---
log "loading $NAMESPACES namespaces, $PODS pods, $POLICIES NetworkPolicies"
out "load through the API (POST each object, PATCH each pod's status; no observer running):"
$PY load "$KC" "$NODE" --namespaces "$NAMESPACES" --pods "$PODS" --policies "$POLICIES" \
  | tee -a "$REPORT"

log "observer against the full cluster"
start_observer "$RUN/observer-full.log"
PERF_SYNC=
if command -v perf >/dev/null; then
  perf record -q -k CLOCK_REALTIME -F 99 --call-graph dwarf,65528 -p "$OBS" -o "$RUN/perf-sync.data" >/dev/null 2>&1 &
  PERF_SYNC=$!
fi
out "full cluster ($PODS pods, $NAMESPACES namespaces, $POLICIES NetworkPolicies, and bench):"
out "  observer $($PY settle "$URL" $((PODS + 3)) $((POLICIES + 1)) "$RUN/observer-full.log" --since "$STARTED" --stamp "$RUN/installed")"
if [ -n "$PERF_SYNC" ]; then
  kill -INT "$PERF_SYNC"; wait "$PERF_SYNC" 2>/dev/null || true; PERF_SYNC=
fi
sleep "$RSS_AFTER"
RSS_FULL=$(rss_kb VmRSS)
out "  observer VmRSS ${RSS_AFTER} s after settling: $(mb "$RSS_FULL") (VmHWM $(mb "$(rss_kb VmHWM)"), the lists' peak)"
out "  memory for the Kubernetes state: $(mb $((RSS_FULL - RSS_EMPTY))) (VmRSS full - empty cluster, both ${RSS_AFTER} s after settling)"
[ -f "$RUN/perf-sync.data" ] && perf_shares "$RUN/perf-sync.data" "observer CPU from its start to the install" "$(cat "$RUN/installed")"

if command -v perf >/dev/null; then
  perf record -q -k CLOCK_REALTIME -F 99 --call-graph dwarf,65528 -p "$OBS" -o "$RUN/perf-after.data" -- sleep 10 >/dev/null 2>&1
  perf_shares "$RUN/perf-after.data" "observer CPU over the next 10 s, no change made" "" ""
fi

PERF_ROUNDS=
if command -v perf >/dev/null; then
  perf record -q -k CLOCK_REALTIME -F 99 --call-graph dwarf,65528 -p "$OBS" -o "$RUN/perf-rounds.data" >/dev/null 2>&1 &
  PERF_ROUNDS=$!
fi
$PY rounds "$KC" "$URL" "$RUN/observer-full.log" "full cluster" --rounds "$ROUNDS" \
  --pid "$OBS" --limit "$LIMIT" --lab "$RUN/lab" | tee -a "$REPORT" "$RUN/rounds-full"
if [ -n "$PERF_ROUNDS" ]; then
  kill -INT "$PERF_ROUNDS"; wait "$PERF_ROUNDS" 2>/dev/null || true; PERF_ROUNDS=
  perf_shares "$RUN/perf-rounds.data" "observer CPU during the rounds" "" "$(grep -c 'PATCH answered' "$RUN/rounds-full")"
fi
churn "$RUN/observer-full.log"
out "  observer VmRSS after the rounds: $(mb "$(rss_kb VmRSS)") (VmHWM $(mb "$(rss_kb VmHWM)"))"
lab_check

echo
echo "== report: bench/kubernetes.sh $ROUNDS =="
cat "$REPORT"
