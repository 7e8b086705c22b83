#!/usr/bin/env python3
"""The Kubernetes side of bench/kubernetes.sh, with the Python standard library only.

  load KUBECONFIG NODE        a cluster of namespaces, pods (status written as a kubelet would,
                              addresses from 198.18.16.0-198.18.55.255) and NetworkPolicies,
                              created by threads over kept-alive HTTPS connections
  bench KUBECONFIG NODE       the namespace `bench`: client, other and server mapped onto the L7
                              lab's web, batch and api pods, and the NetworkPolicy server-ingress
                              admitting pods labelled access=true to server:8080
  settle STATUS_URL PODS POLICIES
                              waits until the observer is synced with PODS pods and POLICIES
                              policy objects and its installed policy revision has stopped moving
  rounds KUBECONFIG STATUS_URL LOG TITLE
                              latency rounds: a label or policy change sent to the API, then new
                              TCP connections from the client's namespace to the server every
                              PROBE_EVERY until the verdict flips; stages from the observer's log

The API server is the one scripts/kube-apiserver.sh starts: its kubeconfig names the server, the
CA (certificate-authority-data) and a bearer token, which is all this reads of it.
"""

import argparse
import base64
import concurrent.futures
import ctypes
import datetime
import errno
import http.client
import json
import os
import random
import re
import selectors
import socket
import ssl
import statistics
import struct
import sys
import threading
import time
import urllib.request

# The L7 lab's pods (tests/labs/l7.yaml) the bench namespace is mapped onto.
CLIENT_NETNS = "fsl-shop-web"
CLIENT_IP = "198.18.7.1"
OTHER_NETNS = "fsl-shop-batch"
OTHER_IP = "198.18.7.2"
SERVER_IP = "198.18.7.3"
SERVER_PORT = 8080

# A new connection attempt this often: the resolution of every latency figure.
PROBE_EVERY = 0.005
# An attempt that has not connected by then was dropped (a lab connection takes well under
# 1 ms; a dropped SYN is only retried by the kernel after 1 s).
PROBE_TIMEOUT = 0.2
# After the flip, attempts are watched this long more: the new verdict must hold.
HOLD = 0.3
CLONE_NEWNET = 0x40000000


class Api:
    """Kept-alive HTTPS connections to the API server, one per thread."""

    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()
        server = re.search(r'server:\s*"?https://([^",}\s]+)', text).group(1)
        ca = re.search(r'certificate-authority-data:\s*"?([A-Za-z0-9+/=]+)', text).group(1)
        self.token = re.search(r'token:\s*"?([^",}\s]+)', text).group(1)
        self.host, port = server.rsplit(":", 1)
        self.port = int(port)
        self.ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
        self.local = threading.local()
        self.requests = 0
        self.lock = threading.Lock()

    def _conn(self, fresh=False):
        if fresh or getattr(self.local, "conn", None) is None:
            self.local.conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.ctx, timeout=60)
        return self.local.conn

    def call(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(5):
            conn = self._conn(fresh=attempt > 0)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                text = resp.read()
            except (http.client.HTTPException, OSError):
                time.sleep(0.1 * (attempt + 1))
                continue
            with self.lock:
                self.requests += 1
            # 429 (too many requests in flight) and 5xx are retried.
            if resp.status == 429 or resp.status >= 500:
                time.sleep(0.2 * (attempt + 1))
                continue
            if resp.status not in ok:
                raise RuntimeError("%s %s: %d %s" % (method, path, resp.status, text[:300]))
            return json.loads(text) if text else None
        raise RuntimeError("%s %s: no answer after 5 attempts" % (method, path))

    def create(self, path, obj):
        return self.call("POST", path, obj, ok=(201,))

    def merge(self, path, patch):
        return self.call("PATCH", path, patch, content_type="application/merge-patch+json",
                         ok=(200,))


def pod_path(namespace, name=""):
    return "/api/v1/namespaces/%s/pods%s" % (namespace, "/" + name if name else "")


def policy_path(namespace, name=""):
    return "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies%s" % (
        namespace, "/" + name if name else "")


def make_pod(api, namespace, name, labels, node, ip, ports):
    """A pod, then its status as the kubelet would write it (running, with its address)."""
    api.create(pod_path(namespace), {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "containers": [{
            "name": "app", "image": "example",
            "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]}]},
    })
    api.merge(pod_path(namespace, name) + "/status", {
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})


# The cluster's pods: five apps per namespace, in tiers, as a microservice shop would have.
APPS = [("web", "frontend", [("http", 8080)]), ("api", "backend", [("http", 8080)]),
        ("db", "data", [("pg", 5432)]), ("cache", "data", [("redis", 6379)]),
        ("worker", "backend", [("metrics", 9090)])]
ENVS = ["prod", "staging", "dev"]


def pod_ip(i):
    """Pod i's address: 198.18.16.1 upwards, 250 to a /24 (no .0, no .255), clear of the
    lab's 198.18.0.0/24 and 198.18.7.0/24 and of the tests' 198.19.0.0/16."""
    return "198.18.%d.%d" % (16 + i // 250, i % 250 + 1)


def policy(j, namespace, teams):
    """NetworkPolicy j: five shapes in turn (pod selectors, namespace selectors, both,
    named and numbered ports, egress with an ipBlock)."""
    shape = j % 5
    meta = {"name": "np-%04d" % j, "namespace": namespace}
    tcp = lambda p: {"port": p, "protocol": "TCP"}
    if shape == 0:
        spec = {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                             "ports": [tcp(8080)]}]}
    elif shape == 1:
        spec = {"podSelector": {"matchLabels": {"tier": "data"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team-%02d" % (j % teams)}},
                                       "podSelector": {"matchLabels": {"app": "api"}}}],
                             "ports": [tcp(5432), tcp(6379)]}]}
    elif shape == 2:
        spec = {"podSelector": {}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                             "ports": [tcp("http")]}]}
    elif shape == 3:
        spec = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "api"}}}],
                            "ports": [tcp(8080)]},
                           {"to": [{"ipBlock": {"cidr": "198.18.240.0/20", "except": ["198.18.250.0/24"]}}],
                            "ports": [{"port": 53, "protocol": "UDP"}]}]}
    else:
        spec = {"podSelector": {"matchLabels": {"app": "worker"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["data", "backend"]}]}}],
                            "ports": [tcp(5432), tcp(6379), tcp(8080)]}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
            "spec": spec}


def parallel(threads, fn, items):
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, items):
            pass


def cmd_load(a):
    api = Api(a.kubeconfig)
    teams = 50
    names = ["ns-%04d" % i for i in range(a.namespaces)]
    per_ns = max(1, a.pods // a.namespaces)

    def namespace(i):
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": names[i], "labels": {"team": "team-%02d" % (i % teams), "env": ENVS[i % 3]}}})

    def pod(i):
        app, tier, ports = APPS[i % len(APPS)]
        # One pod in `nodes` is on the observer's node, as in a cluster of that many nodes:
        # those cost the observer a route lookup each (they are routed nowhere here).
        node = a.node if i % a.nodes == 0 else "node-%03d" % (i % a.nodes)
        make_pod(api, names[(i // per_ns) % a.namespaces], "%s-%05d" % (app, i),
                 {"app": app, "tier": tier, "version": "v%d" % (i % 3)}, node, pod_ip(i), ports)

    def netpol(j):
        ns = names[j % a.namespaces]
        api.create(policy_path(ns), policy(j, ns, teams))

    took = {}
    for what, fn, n in [("namespaces", namespace, a.namespaces), ("pods", pod, a.pods),
                        ("policies", netpol, a.policies)]:
        r0, t0 = api.requests, time.monotonic()
        parallel(a.threads, fn, range(n))
        took[what] = (n, time.monotonic() - t0, api.requests - r0)
    total = sum(t for _, t, _ in took.values())
    for what, (n, t, r) in took.items():
        print("  %-10s %6d in %6.1f s (%d requests, %.0f/s)" % (what, n, t, r, r / t))
    print("  %-10s %6d objects in %.1f s with %d threads" % (
        "total", sum(n for n, _, _ in took.values()), total, a.threads))


def server_ingress(port):
    """bench/server-ingress: server admits pods labelled access=true on `port`."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "server-ingress", "namespace": "bench"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}],
                                  "ports": [{"port": port, "protocol": "TCP"}]}]}}


def cmd_bench(a):
    api = Api(a.kubeconfig)
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "bench", "labels": {"team": "bench"}}})
    make_pod(api, "bench", "client", {"app": "client"}, a.node, CLIENT_IP, [])
    make_pod(api, "bench", "other", {"app": "other"}, a.node, OTHER_IP, [])
    make_pod(api, "bench", "server", {"app": "server"}, a.node, SERVER_IP, [("http", SERVER_PORT)])
    api.create(policy_path("bench"), server_ingress(SERVER_PORT))


def status(url):
    with urllib.request.urlopen(url + "/api/v1/status", timeout=30) as r:
        return json.load(r)


def cmd_settle(a):
    """Synced with every object, and a policy revision with every policy installed (its log
    line: the maps are written then; the status shows the revision only once the observer
    has also worked out which pods each policy selects, which can take far longer)."""
    deadline = time.time() + a.timeout
    st, k, install = {}, {}, None
    while time.time() < deadline:
        try:
            st = status(a.url)
        except OSError:  # not listening yet
            time.sleep(0.25)
            continue
        k = st.get("kubernetes") or {}
        if k.get("synced") and k.get("pods") == a.pods and k.get("policies") == a.policies:
            events = log_events(a.log)
            install = next((e for e in events if e[1] == "installed"
                            and e[2].get("policies") == str(a.policies)), None)
            if install:
                break
        time.sleep(0.25)
    if not install:
        sys.exit("the observer did not install the %d policies within %d s: %s" % (
            a.policies, a.timeout, json.dumps({"kubernetes": k})))
    registry = [e for e in log_events(a.log) if e[1] == "registry" and e[0] <= install[0]][-1]
    if a.stamp:
        open(a.stamp, "w").write("%.6f\n" % install[0])
    f = install[2]
    print("synced, %s policies installed %.1f s after its start (last registry -> installed: "
          "%.0f ms); kubernetes status: pods=%s namespaces=%s policies=%s; installed: revision=%s "
          "entries=%s enforced=%s" % (
              f["policies"], install[0] - a.since, (install[0] - registry[0]) * 1000,
              k["pods"], k["namespaces"], k["policies"], f["revision"], f["entries"],
              f["enforced"]))
    # After writing the maps the policy loop works out, for the status (policy list, endpoint
    # list), which pods each policy selects; only then is the revision in the status, and only
    # then does the loop look at the next change.
    revision = int(f["revision"])
    limit = time.time() + a.status_limit
    while time.time() < limit:
        p = status(a.url).get("policy") or {}
        if p.get("revision", 0) >= revision:
            print("  status shows the revision %.0f ms after its install (selections for policy "
                  "list and endpoint list; the policy loop takes no change meanwhile)"
                  % ((time.time() - install[0]) * 1000))
            return
        time.sleep(0.05)
    print("  status does not show the revision %.0f s after its install (the policy loop is "
          "still working out selections and takes no change meanwhile)"
          % (time.time() - install[0]))


class Prober(threading.Thread):
    """New TCP connections from a lab pod's network namespace to the server, one every
    PROBE_EVERY, each judged connected or not within PROBE_TIMEOUT. The thread enters the
    namespace itself (setns affects only the calling thread), so the API calls of the main
    thread still go to the API server on this machine's loopback."""

    def __init__(self, netns, dst, port):
        super().__init__(daemon=True)
        self.netns, self.dst = netns, (dst, port)
        self.lock = threading.Lock()
        # [start (monotonic), result: None pending, True connected, False not; errno]
        self.attempts = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/run/netns/" + self.netns, os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + self.netns)
            os.close(fd)
            self._loop()
        except Exception as e:  # reported by the main thread
            self.error = e

    def _loop(self):
        sel = selectors.DefaultSelector()
        pending = {}
        next_start = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_start:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                # Closed with a reset: no TIME_WAIT sockets pile up over thousands of attempts.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                attempt = [now, None, 0]
                with self.lock:
                    self.attempts.append(attempt)
                err = s.connect_ex(self.dst)
                if err in (0, errno.EINPROGRESS):
                    sel.register(s, selectors.EVENT_WRITE, attempt)
                    pending[s] = attempt
                else:
                    attempt[1:] = [False, err]
                    s.close()
                next_start = max(next_start + PROBE_EVERY, now)
            timeout = max(0.0, next_start - time.monotonic())
            for key, _ in sel.select(timeout):
                s, attempt = key.fileobj, key.data
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                with self.lock:
                    attempt[1:] = [err == 0, err]
                sel.unregister(s)
                del pending[s]
                s.close()
            now = time.monotonic()
            for s, attempt in list(pending.items()):
                if now - attempt[0] >= PROBE_TIMEOUT:
                    with self.lock:
                        attempt[1:] = [False, errno.ETIMEDOUT]
                    sel.unregister(s)
                    del pending[s]
                    s.close()

    def flip(self, since, want, limit):
        """The first attempt started after `since` whose result is `want`, once every attempt
        before it is decided; then the verdict must hold for HOLD. Returns (start, flaps,
        refused) or None after `limit`."""
        deadline = since + limit
        found = None
        while time.monotonic() < deadline:
            if self.error:
                raise self.error
            with self.lock:
                later = [a[:] for a in self.attempts if a[0] >= since]
            if found is None:
                for a in later:
                    if a[1] is None:
                        break
                    if a[1] == want:
                        found = a[0]
                        break
            if found is not None and time.monotonic() >= found + HOLD + PROBE_TIMEOUT:
                after = [a for a in later if a[0] > found and a[0] <= found + HOLD]
                flaps = sum(1 for a in after if a[1] is not None and a[1] != want)
                refused = sum(1 for a in later if a[2] == errno.ECONNREFUSED)
                return found, flaps, refused
            time.sleep(0.005)
        return None

    def drop_before(self, t):
        with self.lock:
            self.attempts = [a for a in self.attempts if a[0] >= t]


ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


FIELD = re.compile(r"(\w+)=(\S+)")


def log_events(path):
    """(wall time, 'registry'|'installed'|'not served', fields) of the observer's log lines
    that end a stage."""
    out = []
    for line in open(path, errors="replace"):
        line = ANSI.sub("", line)
        m = STAMP.match(line)
        if not m:
            continue
        stamp = m.group(1)
        if "." in stamp:  # at most microseconds for fromisoformat
            head, frac = stamp.split(".")
            stamp = head + "." + (frac + "000000")[:6]
        t = datetime.datetime.fromisoformat(stamp).replace(
            tzinfo=datetime.timezone.utc).timestamp()
        fields = dict(FIELD.findall(line))
        if "Endpoints from the Kubernetes API" in line:
            out.append((t, "registry", fields))
        elif "Policies installed" in line:
            out.append((t, "installed", fields))
        elif "Not served" in line:
            out.append((t, "not served", fields))
    return out


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stop(Exception):
    """The rounds cannot go on (a change not enforced, the lab gone)."""


def lab_intact(path):
    """The lab's interfaces are still the ones it had when this run brought it up (another
    user's `lab down` / `lab up` replaces them)."""
    if not path:
        return True
    for line in open(path):
        name, index = line.split()
        try:
            if open("/sys/class/net/%s/ifindex" % name).read().strip() != index:
                return False
        except OSError:
            return False
    return True


def cmd_rounds(a):
    api = Api(a.kubeconfig)
    wall = time.time() - time.monotonic()  # monotonic -> wall clock, for the log
    # The other pod is never labelled: while the client is denied, it must be too.
    other = Prober(OTHER_NETNS, SERVER_IP, SERVER_PORT)
    client = Prober(CLIENT_NETNS, SERVER_IP, SERVER_PORT)
    client.start()
    other.start()
    client_path = pod_path("bench", "client")

    def label(on):
        api.merge(client_path, {"metadata": {"labels": {"access": "true" if on else None}}})

    def port(on):
        api.merge(policy_path("bench", "server-ingress"),
                  {"spec": server_ingress(SERVER_PORT if on else SERVER_PORT + 1)["spec"]})

    def settle():
        # The snapshot and installed revisions stop moving: the previous change is done.
        last = None
        for _ in range(240):
            st = status(a.url)
            key = ((st.get("kubernetes") or {}).get("revision"),
                   (st.get("policy") or {}).get("revision"))
            if key == last:
                break
            last = key
            time.sleep(0.5)
        time.sleep(random.uniform(0, 0.3))  # no fixed phase against the observer's ticks

    def ms(v):
        return "%.0f" % (v * 1000)

    results = []  # (kind, direction, latency or None, PATCH wall time, flip wall time)
    cpu0 = cpu_seconds(a.pid) if a.pid else None

    def transition(kind, change, on):
        if not lab_intact(a.lab):
            raise Stop("the lab was replaced (another user's lab down/up): stopping")
        settle()
        client.drop_before(time.monotonic() - 1)
        other.drop_before(time.monotonic() - 1)
        t0 = time.monotonic()
        change(on)
        sent = time.monotonic() - t0
        got = client.flip(t0, on, a.limit)
        direction = "deny->allow" if on else "allow->deny"
        if got is None:
            results.append((kind, direction, None, t0 + wall, None))
            print("  %-6s %-12s NOT ENFORCED within %.0f s" % (kind, direction, a.limit), flush=True)
            # What the observer did meanwhile, by its log.
            events = [e for e in log_events(a.log) if e[0] >= t0 + wall]
            reg = [e for e in events if e[1] == "registry"]
            inst = [e for e in events if e[1] == "installed"]
            if reg:
                print("    the change reached the observer: a registry was built %s ms after the "
                      "PATCH (%d since)" % (ms(reg[0][0] - t0 - wall), len(reg)))
            print("    policy revisions installed since the PATCH: %d%s" % (len(inst), (
                " (the policy loop has not come round: it is still busy with its previous "
                "revision)" if not inst else "")))
            raise Stop("a change not enforced within %.0f s: the next would wait behind it" % a.limit)
        start, flaps, refused = got
        if refused:
            raise Stop("%d connections refused: the lab's server is gone (another user's "
                       "lab down?)" % refused)
        results.append((kind, direction, start - t0, t0 + wall, start + wall))
        note = ""
        if flaps:
            note += " (%d attempts disagreed within %.1f s after)" % (flaps, HOLD)
        rss = ""
        if a.pid:
            kb = next(int(l.split()[1]) for l in open("/proc/%d/status" % a.pid)
                      if l.startswith("VmRSS:"))
            rss = ", observer VmRSS %.1f MB" % (kb / 1024)
        print("  %-6s %-12s %7s ms   (PATCH answered in %s ms%s)%s" % (
            kind, direction, ms(start - t0), ms(sent), rss, note), flush=True)

    stopped = None
    try:
        # Label rounds: the policy admits access=true on 8080; the client gains and loses it.
        port(True)
        label(False)
        if client.flip(time.monotonic(), False, a.limit) is None:
            raise Stop("the client is not denied at the start: server-ingress is not enforced")
        if other.flip(time.monotonic(), False, a.limit) is None:
            raise Stop("the unlabelled pod `other` reaches the server: the policy is not enforced")
        for _ in range(a.rounds):
            transition("label", label, True)
            transition("label", label, False)
        # Policy rounds: the client keeps access=true; the policy's port moves off 8080 and back.
        label(True)
        if client.flip(time.monotonic(), True, a.limit) is None:
            raise Stop("the labelled client is not admitted")
        for _ in range(a.rounds):
            transition("policy", port, False)
            transition("policy", port, True)
    except Stop as e:
        stopped = str(e)
    cpu1 = cpu_seconds(a.pid) if a.pid else None
    with other.lock:
        other_ok = sum(1 for x in other.attempts if x[1])
    client.stop.set()
    other.stop.set()
    try:
        label(False)
        port(True)
    except RuntimeError:
        pass

    # Figures: per kind and direction, min/median/max over the rounds.
    print("  %s: PATCH sent -> first new connection with the new verdict (one every %.0f ms), "
          "%d rounds" % (a.title, PROBE_EVERY * 1000, a.rounds))
    if stopped:
        print("    stopped: %s" % stopped)
    print("    %-7s %-12s %8s %8s %8s" % ("change", "direction", "min", "median", "max"))
    worst = 0
    for kind in ("label", "policy"):
        for direction in ("deny->allow", "allow->deny"):
            vals = [r[2] for r in results if r[0] == kind and r[1] == direction]
            ok = [v for v in vals if v is not None]
            missed = len(vals) - len(ok)
            if missed:
                worst = float("inf")
            if not ok:
                print("    %-7s %-12s %s" % (kind, direction, "not enforced within %.0f s" % a.limit
                                             if missed else "not measured"))
                continue
            worst = max(worst, max(ok))
            print("    %-7s %-12s %5s ms %5s ms %5s ms  (%d)%s" % (
                kind, direction, ms(min(ok)), ms(statistics.median(ok)), ms(max(ok)), len(ok),
                "  + %d not enforced within %.0f s" % (missed, a.limit) if missed else ""))
    if other_ok:
        print("    !! the unlabelled pod `other` connected %d times" % other_ok)

    # Stages from the observer's log: the first registry built after the PATCH, the first
    # policy revision installed after that, and the probe.
    events = log_events(a.log)
    stages = {"label": ([], [], []), "policy": ([], [], [])}
    for kind, _, lat, sent_at, flip_at in results:
        if lat is None:
            continue
        # The install that enforced the change: the first whose log line follows the flip (the
        # line is written just after the maps, so it may trail the first connection by a few
        # ms), and the last registry built after the PATCH and before it.
        inst = next((t for t, e, _ in events if e == "installed" and t >= flip_at - 0.02), None)
        if inst is None:
            continue
        # A policy change builds no registry (nothing the registry holds changed).
        reg = [t for t, e, _ in events if e == "registry" and sent_at <= t <= inst]
        reg = reg[-1] if reg else None
        if reg is not None:
            stages[kind][0].append(reg - sent_at)
        stages[kind][1].append(inst - (reg if reg is not None else sent_at))
        stages[kind][2].append(flip_at - inst)
    if any(stages[k][0] for k in stages):
        print("    stages, median [min-max] over both directions, from the observer's log (the "
              "install whose line follows the flip, the last registry before it):")
    for kind in ("label", "policy"):
        a1, a2, a3 = stages[kind]
        if not a2:
            continue
        f = lambda v: "%5s ms [%s-%s] (%d)" % (ms(statistics.median(v)), ms(min(v)), ms(max(v)),
                                             len(v))
        if a1:
            print("      %-6s PATCH -> registry built (watch event, 100 ms publish tick, snapshot, "
                  "routes, registry) %s" % (kind, f(a1)))
        print("      %-6s %s -> policies installed (250 ms poll or the loop's previous turn, "
              "parse, compile, maps) %s" % ("" if a1 else kind,
                                            "registry (or PATCH)" if a1 else "PATCH", f(a2)))
        print("      %-6s installed (log line) -> first connection with the new verdict %s"
              % ("", f(a3)))
    if cpu0 is not None and results:
        print("    observer CPU during the rounds: %.1f s, %s ms per change" % (
            cpu1 - cpu0, ms((cpu1 - cpu0) / len(results))))
    if results:
        print("    slowest change: %s (target < 1000 ms): %s" % (
            "not enforced" if worst == float("inf") else ms(worst) + " ms",
            "met" if worst < 1.0 else "MISSED"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    l.add_argument("kubeconfig")
    l.add_argument("node")
    l.add_argument("--namespaces", type=int, default=1000)
    l.add_argument("--pods", type=int, default=10000)
    l.add_argument("--policies", type=int, default=1000)
    l.add_argument("--nodes", type=int, default=100, help="nodes the pods are spread over")
    l.add_argument("--threads", type=int, default=16)
    b = sub.add_parser("bench")
    b.add_argument("kubeconfig")
    b.add_argument("node")
    s = sub.add_parser("settle")
    s.add_argument("url")
    s.add_argument("pods", type=int)
    s.add_argument("policies", type=int)
    s.add_argument("log")
    s.add_argument("--since", type=float, required=True, help="the observer's start (epoch)")
    s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--stamp", help="a file to write the install's time to (epoch)")
    s.add_argument("--status-limit", type=float, default=120,
                   help="seconds to wait for the status to show the installed revision")
    r = sub.add_parser("rounds")
    r.add_argument("kubeconfig")
    r.add_argument("url")
    r.add_argument("log")
    r.add_argument("title")
    r.add_argument("--rounds", type=int, default=7)
    r.add_argument("--pid", type=int, help="the observer's, for its CPU time")
    r.add_argument("--limit", type=float, default=30, help="seconds a change may take")
    r.add_argument("--lab", help="file of the lab's interfaces and their indexes")
    a = p.parse_args()
    {"load": cmd_load, "bench": cmd_bench, "settle": cmd_settle, "rounds": cmd_rounds}[a.cmd](a)


if __name__ == "__main__":
    main()
