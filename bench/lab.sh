# Shared by the bench scripts that run in a lab (`flowscope lab up`): the observer on the lab's
# pods, and a pod's address. Source after setting BIN.
LAB_ENDPOINTS=/run/flowscope/lab/endpoints.json

# lab_observer PORT ARGS...: the observer on every lab interface with the lab's endpoints,
# listening on 127.0.0.1:PORT, in the background (OBS is its pid); returns once it is ready.
# The caller redirects its stderr.
lab_observer() {
  local port=$1
  shift
  "$BIN" observer --no-pin --interface 'fsl*' --endpoint-interface 'fsl*' \
    --endpoints "$LAB_ENDPOINTS" --listen "127.0.0.1:$port" "$@" &
  OBS=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "the observer on port $port did not become ready" >&2
  return 1
}

# pod_ip NAMESPACE POD: the pod's first address in the lab's endpoints; fails if it has none.
pod_ip() {
  python3 - "$LAB_ENDPOINTS" "$1" "$2" <<'PY'
import json, sys
path, ns, pod = sys.argv[1:]
for e in json.load(open(path))["endpoints"]:
    if (e["namespace"], e["pod_name"]) == (ns, pod):
        print(e["ips"][0])
        sys.exit(0)
sys.exit("%s/%s not found in %s" % (ns, pod, path))
PY
}
