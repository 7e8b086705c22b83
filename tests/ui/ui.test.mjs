// The web UI against a running `flowscope demo` (the lab with the seed's policies):
//   FLOWSCOPE_URL=http://127.0.0.1:4244 ARTIFACTS=dir node tests/ui/ui.test.mjs
// Checks the map's workloads and verdict colours on paths the policies deny and allow, the
// namespace view, selection, filters (and that the link reproduces them), pause, details
// (labels become filters), column chooser, export and the status bar; screenshots go to
// ARTIFACTS. Prints "N passed, N failed"; exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import {
  Steps, artifacts, assert, edge, edgeColour, eventually, launch, node,
} from "./lib.mjs";

const BASE = (process.env.FLOWSCOPE_URL || "http://127.0.0.1:4244").replace(/\/$/, "");
const GREEN = "rgb(49, 164, 19)";
const RED = "rgb(197, 0, 0)";
const dir = artifacts();

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1600, height: 1000 }, acceptDownloads: true });
const page = await context.newPage();
const consoleErrors = [];
page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
page.on("pageerror", (e) => consoleErrors.push(String(e)));
const t = new Steps(page, dir);
const shot = (name) => page.screenshot({ path: path.join(dir, `${name}.png`) });
const rowsText = (column) =>
  page.$$eval(`[data-test=row] .td[data-column=${column}]`, (tds) => tds.map((td) => td.textContent));
const rowAttr = (attr) => page.$$eval("[data-test=row]", (rows, a) => rows.map((r) => r.getAttribute(a)), attr);

await t.step("page loads and connects", async () => {
  await page.goto(BASE + "/");
  await page.waitForSelector("[data-test=conn][data-state=open]", { timeout: 20000 });
});

await t.step("map shows the lab's workloads grouped by namespace", async () => {
  for (const id of ["default/frontend", "default/my-api", "default/postgres", "kube-system/kube-dns", "monitoring/prometheus"]) {
    await page.waitForSelector(node(id), { timeout: 30000 });
  }
  for (const ns of ["default", "kube-system", "monitoring"]) {
    assert(await page.$(`g.island[data-namespace="${ns}"]`), `no island for ${ns}`);
  }
  await shot("map-all-namespaces");
});

await t.step("a denied path is red, allowed paths are green", async () => {
  const denied = await eventually(() => edgeColour(page, "default/frontend", "default/postgres", 5432), 30000, "frontend -> postgres edge");
  assert(denied.class === "dropped", `frontend -> postgres is ${denied.class}, want dropped (${denied.id})`);
  assert(denied.stroke === RED, `frontend -> postgres stroke ${denied.stroke}`);
  const scrape = await eventually(() => edgeColour(page, "monitoring/prometheus", "default/frontend", 80), 30000, "prometheus -> frontend edge");
  assert(scrape.class === "forwarded", `prometheus -> frontend is ${scrape.class}, want forwarded`);
  assert(scrape.stroke === GREEN, `prometheus -> frontend stroke ${scrape.stroke}`);
  const dns = await eventually(() => edgeColour(page, "default/frontend", "kube-system/kube-dns", 53), 30000, "frontend -> kube-dns:53");
  assert(dns.class === "forwarded", `frontend -> kube-dns:53 is ${dns.class}, want forwarded`);
  assert(dns.id.endsWith(":53/UDP"), dns.id);
  const label = await page.$eval(`g.edge[data-edge="${dns.id}"] .edge-label`, (e) => e.textContent);
  assert(label.includes("53/UDP"), `label ${label}`);
});

await t.step("the L7 policy's edge: GETs pass, POSTs and DELETEs are denied (red, 403)", async () => {
  const api = await eventually(async () => {
    const e = await edgeColour(page, "default/frontend", "default/my-api", 8080);
    return e && e.class === "mixed" ? e : null;
  }, 30000, "frontend -> my-api edge with allowed and denied requests");
  assert(api.stroke === RED, `frontend -> my-api stroke ${api.stroke}`);
  const label = await eventually(async () => {
    const l = await page.$eval(`g.edge[data-edge="${api.id}"] .edge-label`, (e) => e.textContent);
    return l.includes("403") && l.includes("200") && l.includes("POST") ? l : null;
  }, 30000, "the edge's label with methods and status codes");
  assert(label.includes("GET") && label.includes("/api/items"), `label ${label}`);
  await shot("map-l7-edge");
});

await t.step("the graph API serves the same map", async () => {
  const g = await page.evaluate(async () => (await fetch("/api/v1/graph")).json());
  const ids = g.nodes.map((n) => n.id);
  assert(ids.includes("default/frontend") && ids.includes("kube-system/kube-dns"), ids.join(","));
  const d = g.edges.find((e) => e.id === "default/frontend->default/postgres:5432/TCP");
  assert(d && d.class === "dropped" && d.verdicts.DROPPED > 0, JSON.stringify(d));
  const e = g.edges.find((e) => e.id === "default/frontend->default/my-api:8080/TCP");
  assert(e && e.class === "mixed" && e.verdicts.DROPPED > 0 && e.verdicts.FORWARDED > 0, JSON.stringify(e));
  assert(e.http && e.http.codes.includes(403) && e.http.codes.includes(200), JSON.stringify(e));
  assert(["GET", "POST", "DELETE"].every((m) => e.http.methods.includes(m)), JSON.stringify(e));
  assert(g.namespaces.includes("monitoring"), g.namespaces.join(","));
});

await t.step("namespace selection shows the namespace and its peers", async () => {
  await page.selectOption("[data-test=namespace]", "kube-system");
  await eventually(async () => !(await page.$(node("default/postgres"))), 5000, "postgres hidden");
  assert(await page.$(node("kube-system/kube-dns")), "kube-dns shown");
  assert(await page.$(node("default/frontend")), "a peer of kube-dns shown");
  await eventually(async () => {
    const edges = await rowAttr("data-edge");
    return edges.length > 0 && edges.every((e) => e.includes("kube-system/"));
  }, 10000, "table rows all touch kube-system");
  assert(page.url().includes("ns=kube-system"), page.url());
  await shot("map-kube-system");
  await page.selectOption("[data-test=namespace]", "");
  await page.waitForSelector(node("default/postgres"), { timeout: 5000 });
});

await t.step("clicking a node filters the table", async () => {
  await page.click(`${node("default/my-api")} rect`);
  await page.waitForSelector("[data-test=selection]");
  await eventually(async () => {
    const edges = await rowAttr("data-edge");
    return edges.length > 0 && edges.every((e) => e.includes("default/my-api"));
  }, 10000, "rows of my-api only");
  assert(decodeURIComponent(page.url()).includes("sel=node:default/my-api"), page.url());
  await shot("node-selected");
  await page.click("[data-test=selection] button.x");
});

await t.step("clicking an edge filters the table to it", async () => {
  const id = "default/frontend->default/postgres:5432/TCP";
  await page.dispatchEvent(`g.edge[data-edge="${id}"] .hit`, "click");
  await eventually(async () => {
    const edges = await rowAttr("data-edge");
    return edges.length > 0 && edges.every((e) => e === id);
  }, 10000, "rows of the edge only");
  const verdicts = await rowAttr("data-verdict");
  assert(verdicts.every((v) => v === "DROPPED"), verdicts.join(","));
  await page.click("[data-test=selection] button.x");
});

await t.step("filters go to the server and stay in the URL", async () => {
  await page.fill("[data-test=filter-input]", "from:pod=default/frontend");
  await page.press("[data-test=filter-input]", "Enter");
  await page.selectOption("[data-test=verdict]", "DROPPED");
  await page.waitForSelector("[data-test=conn][data-state=open]");
  await eventually(async () => {
    const src = await rowsText("source");
    const v = await rowAttr("data-verdict");
    return src.length > 0 && src.every((s) => s.startsWith("default/frontend")) && v.every((x) => x === "DROPPED");
  }, 20000, "only dropped flows from frontend");
  const url = decodeURIComponent(page.url());
  assert(url.includes("f=from:pod=default/frontend") && url.includes("verdict=DROPPED"), url);
  await shot("filtered");
  // The link reproduces the view.
  const other = await context.newPage();
  await other.goto(page.url());
  await other.waitForSelector("[data-test=filter-chip]");
  const chip = await other.textContent("[data-test=filter-chip]");
  assert(chip.includes("from:pod=default/frontend"), chip);
  assert((await other.inputValue("[data-test=verdict]")) === "DROPPED", "verdict from the link");
  await other.close();
  // Back to everything.
  await page.click("[data-test=filter-chip] button.x");
  await page.selectOption("[data-test=verdict]", "");
  await eventually(async () => (await rowAttr("data-verdict")).some((v) => v === "FORWARDED"), 20000, "unfiltered again");
});

await t.step("pause keeps the rows still, resume shows the new ones", async () => {
  await page.click("[data-test=pause]");
  const first = await page.textContent("[data-test=row]");
  await page.waitForTimeout(3000);
  assert((await page.textContent("[data-test=row]")) === first, "rows moved while paused");
  const label = await page.textContent("[data-test=pause]");
  const pending = Number((label.match(/\((\d+) new\)/) || [])[1]);
  assert(pending > 0, `pause button: ${label}`);
  await page.click("[data-test=pause]");
  await eventually(async () => (await page.textContent("[data-test=row]")) !== first, 10000, "rows move after resume");
});

await t.step("details panel; a label becomes a filter in one click", async () => {
  await page.click("[data-test=row]");
  await page.waitForSelector("[data-test=details]");
  const labels = await page.$$("[data-test=details] [data-test=detail-label]");
  assert(labels.length > 0, "no label chips");
  await shot("details");
  const label = await labels[0].textContent();
  await labels[0].click();
  await eventually(async () => {
    const chips = await page.$$eval("[data-test=filter-chip]", (c) => c.map((x) => x.textContent));
    return chips.some((c) => c.includes(`from:label=${label}`));
  }, 5000, `chip for ${label}`);
  await page.click("[data-test=filter-chip] button.x");
});

await t.step("L7 info: the lab's DNS lookups and HTTP requests", async () => {
  // The table renders only the rows in view, and the demo's flows scroll through it: each
  // kind has to be seen once, not both at the same moment.
  let dns = false;
  let http = false;
  await eventually(async () => {
    const l7 = await rowsText("l7");
    dns ||= l7.some((c) => c.startsWith("DNS ") && c.includes(".svc.cluster.local"));
    http ||= l7.some((c) => /^GET http:\/\/\S+\/metrics/.test(c));
    return dns && http;
  }, 30000, "DNS and HTTP rows with their L7 details");
});

await t.step("column chooser", async () => {
  await page.click("[data-test=columns]");
  await page.check('[data-test=columns-menu] input[data-column="drop_reason"]');
  await page.click("[data-test=columns]");
  await page.waitForSelector('.thead .th[data-column="drop_reason"]');
  assert(decodeURIComponent(page.url()).includes("drop_reason"), page.url());
  await eventually(async () => (await rowsText("drop_reason")).some((r) => r.startsWith("POLICY_DEN")), 30000, "a drop reason shown");
});

await t.step("export writes the table's flows as Hubble JSON", async () => {
  // Paused, so the rows counted are the rows exported (new flows arrive several a second).
  await page.click("[data-test=pause]");
  const shown = Number((await page.textContent("[data-test=row-count]")).match(/\d+/)[0]);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("[data-test=export]")]);
  await page.click("[data-test=pause]");
  const file = path.join(dir, "export.json");
  await download.saveAs(file);
  const lines = fs.readFileSync(file, "utf8").split("\n").filter(Boolean);
  assert(lines.length > 0 && Math.abs(lines.length - shown) <= 0, `${lines.length} lines, ${shown} rows shown`);
  for (const line of lines) {
    const v = JSON.parse(line);
    assert(v.flow && v.flow.verdict && v.node_name !== undefined, line.slice(0, 200));
  }
  // RFC 3339 with 0, 3, 6 or 9 fractional digits (as protojson writes them): compare padded
  // to nanoseconds, not as written ("…873Z" is before "…873280Z").
  const nanos = (t) => {
    const m = t.match(/^(.*?)(?:\.(\d+))?Z$/);
    return `${m[1]}.${(m[2] || "").padEnd(9, "0")}`;
  };
  const times = lines.map((l) => nanos(JSON.parse(l).flow.time));
  assert([...times].sort().join() === times.join(), "exported oldest first");
});

await t.step("status bar: connection, rate, lost events, nodes", async () => {
  await eventually(async () => /[1-9][0-9.]* flows\/s/.test(await page.textContent("[data-test=rate]")), 10000, "a rate");
  const nodes = await page.textContent("[data-test=nodes]");
  assert(/1 connected, 0 unavailable/.test(nodes), nodes);
  assert(/lost events: \d+/.test(await page.textContent("[data-test=lost]")), "lost events shown");
  await shot("status");
});

await t.step("no page errors", async () => {
  assert(consoleErrors.length === 0, consoleErrors.join("\n"));
});

await browser.close();
process.exit(t.finish());
