// A stand-in observer for the UI's load test: serves the built UI (ui/dist) and answers
// GET /api/v1/flows WebSockets with synthetic flows at a fixed rate: 200 workloads in 10
// namespaces, 600 (source, destination, port) paths, a fifth of them denied, some mixed
// (dropped and forwarded) and some in audit mode, HTTP on a third. The lab's traffic is a few flows per second; this is how the page gets
// 5,000 flows/s on a 2-core machine without the kernel in the loop. Loopback only.
//
//   node tests/ui/replay-server.mjs PORT RATE [DIST]
//
// No dependencies: the WebSocket handshake and unmasked server frames are a few lines.
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

const port = Number(process.argv[2] || 45990);
const rate = Number(process.argv[3] || 5000);
const dist = process.argv[4] || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../ui/dist");

const NAMESPACES = 10;
const WORKLOADS = 200;
const PATHS = 600;
const workloads = Array.from({ length: WORKLOADS }, (_, i) => ({
  ns: `team-${i % NAMESPACES}`,
  app: `svc-${i}`,
  ip: `198.18.${Math.floor(i / 250) + 10}.${(i % 250) + 1}`,
  identity: 10000 + i,
}));
// Deterministic paths: mostly within a namespace, some across.
let seed = 42;
const rnd = (n) => {
  seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
  return (seed >>> 8) % n; // the low bits of an LCG repeat quickly
};
const paths = Array.from({ length: PATHS }, (_, i) => {
  const src = rnd(WORKLOADS);
  // Workload i is in namespace i % NAMESPACES.
  let dst = i % 4 === 0 ? rnd(WORKLOADS) : (src % NAMESPACES) + NAMESPACES * rnd(WORKLOADS / NAMESPACES);
  if (dst === src) dst = (dst + NAMESPACES) % WORKLOADS;
  const denied = i % 5 === 1;
  const mixed = !denied && i % 13 === 0;
  // Audit mode: the policy would drop it, and lets it pass.
  const audit = !denied && !mixed && i % 17 === 5;
  const port = [80, 8080, 5432, 53, 443][i % 5];
  return { src, dst, port, http: i % 3 === 0 && port !== 53, denied, mixed, audit };
});

function endpoint(w) {
  return {
    ID: w.identity - 9000, identity: w.identity, namespace: w.ns,
    labels: [`k8s:app=${w.app}`, `k8s:io.kubernetes.pod.namespace=${w.ns}`],
    pod_name: `${w.app}-5d8f7-abcde`,
  };
}

let sent = 0;
function flowLine() {
  const p = paths[sent % PATHS];
  const s = workloads[p.src];
  const d = workloads[p.dst];
  // A mixed path alternates between rounds over the paths.
  const dropped = p.denied || (p.mixed && Math.floor(sent / PATHS) % 2 === 0);
  const time = new Date().toISOString();
  const flow = {
    time, uuid: crypto.randomUUID(), verdict: dropped ? "DROPPED" : p.audit ? "AUDIT" : "FORWARDED",
    IP: { source: s.ip, destination: d.ip, ipVersion: "IPv4" },
    l4: p.port === 53 ? { UDP: { source_port: 40000 + (sent % 20000), destination_port: 53 } }
      : { TCP: { source_port: 40000 + (sent % 20000), destination_port: p.port, flags: { SYN: true } } },
    source: endpoint(s), destination: endpoint(d), Type: p.http && !dropped ? "L7" : "L3_L4",
    node_name: "replay", event_type: { type: dropped ? 1 : 4 }, traffic_direction: "EGRESS",
    is_reply: false, Summary: "TCP Flags: SYN",
  };
  if (dropped) {
    flow.drop_reason = 133;
    flow.drop_reason_desc = "POLICY_DENIED";
    flow.egress_denied_by = [{ name: "default-deny", namespace: s.ns }];
  }
  if (p.audit) {
    flow.drop_reason_desc = "POLICY_DENIED";
    flow.event_type = { type: 5 };
    flow.Type = "L3_L4";
  }
  if (p.http && !dropped && !p.audit) {
    flow.l7 = { type: "RESPONSE", http: { code: sent % 50 === 0 ? 503 : 200, method: "GET", url: `http://${d.app}/api/v1/items`, protocol: "HTTP/1.1" } };
  }
  sent += 1;
  return JSON.stringify({ flow, node_name: "replay", time });
}

function frame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n])
    : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 255])
    : Buffer.concat([Buffer.from([0x81, 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
  return Buffer.concat([head, payload]);
}

const TYPES = { html: "text/html", js: "text/javascript", wasm: "application/wasm", css: "text/css" };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/api/v1/status") {
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify({ flows_rate: rate, node_name: "replay", seen_flows: sent }));
  }
  if (url.pathname === "/api/v1/graph") {
    res.statusCode = 404;
    return res.end("no graph in the replay server");
  }
  const name = url.pathname === "/" ? "index.html" : url.pathname.startsWith("/ui/") ? url.pathname.slice(4) : null;
  if (!name || name.includes("/") || !fs.existsSync(path.join(dist, name))) {
    res.statusCode = 404;
    return res.end("not found");
  }
  res.setHeader("content-type", TYPES[name.split(".").pop()] || "application/octet-stream");
  res.end(fs.readFileSync(path.join(dist, name)));
});

server.on("upgrade", (req, socket) => {
  const key = req.headers["sec-websocket-key"];
  const accept = crypto.createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  socket.setNoDelay(true);
  socket.on("error", () => {});
  let started = null;
  let mine = 0;
  let blocked = 0;
  // The client's first message is its request; flows start once it arrives.
  socket.once("data", () => {
    started = Date.now();
    const timer = setInterval(() => {
      if (socket.destroyed) return clearInterval(timer);
      const due = Math.floor(((Date.now() - started) * rate) / 1000);
      const chunks = [];
      while (mine < due) {
        chunks.push(frame(flowLine()));
        mine += 1;
      }
      if (chunks.length && !socket.write(Buffer.concat(chunks))) blocked += 1;
    }, 10);
    socket.on("close", () => {
      clearInterval(timer);
      console.error(`replay: connection closed after ${mine} flows, ${blocked} writes blocked`);
    });
  });
});

server.listen(port, "127.0.0.1", () => console.error(`replay: ${rate} flows/s on http://127.0.0.1:${port}/`));
