// The web UI under a heavy stream: the page receives RATE flows/s (default 5,000) from the
// replay server (200 workloads in 10 namespaces) for SECONDS (default 15). Checks what must
// hold however fast the machine is: the map shows every workload, each verdict class (forwarded,
// dropped, mixed, audit) has its own edge style, the table stays bounded at
// its 2,000 rows, pause holds the rows still while flows keep arriving and counts them, one
// namespace's view shows its workloads, and the page raises no error. How fast the page is
// (long tasks, click latency, memory) is measured by bench/ui.sh, not here.
//   node tests/ui/load.test.mjs
import path from "node:path";
import { Steps, artifacts, assert, eventually, freePort, launch, startReplayServer } from "./lib.mjs";

const RATE = Number(process.env.RATE || 5000);
const SECONDS = Number(process.env.SECONDS || 15);
const PORT = Number(process.env.PORT) || (await freePort());
const dir = artifacts();
const server = await startReplayServer(PORT, RATE);

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
const t = new Steps(page, dir);
const rowCount = async () => Number((await page.textContent("[data-test=row-count]")).match(/\d+/)[0]);
const firstRows = () =>
  page.$$eval("[data-test=row]", (rows) => rows.slice(0, 20).map((r) => r.textContent).join("\n"));

await t.step(`the map shows all 200 workloads of a ${RATE} flows/s stream`, async () => {
  await page.goto(`http://127.0.0.1:${PORT}/`);
  await page.waitForSelector("[data-test=conn][data-state=open]", { timeout: 30000 });
  await eventually(async () => (await page.$$("g.node")).length === 200, 60000, "200 workloads on the map");
  const namespaces = await page.$$eval("g.island", (g) => g.map((i) => i.dataset.namespace));
  assert(namespaces.length === 10, `islands: ${namespaces.join(",")}`);
});

await t.step("edges show each verdict class in its own style", async () => {
  // style.css: forwarded green, dropped red, mixed (dropped and forwarded) red dashed, audit
  // (would have been dropped) orange dotted.
  const want = {
    forwarded: ["rgb(49, 164, 19)", "none"],
    dropped: ["rgb(197, 0, 0)", "none"],
    mixed: ["rgb(197, 0, 0)", "7px, 5px"],
    audit: ["rgb(224, 138, 0)", "2px, 3px"],
  };
  const seen = await eventually(async () => {
    const styles = await page.$$eval("g.edge", (edges) => {
      const out = {};
      for (const e of edges) {
        const line = getComputedStyle(e.querySelector(".line"));
        out[e.dataset.class] ||= [line.stroke, line.strokeDasharray];
      }
      return out;
    });
    return Object.keys(want).every((c) => styles[c]) && styles;
  }, 30000, "an edge of every class");
  for (const [cls, [stroke, dash]] of Object.entries(want)) {
    assert(seen[cls][0] === stroke, `${cls} edge stroke ${seen[cls][0]}, want ${stroke}`);
    assert(seen[cls][1] === dash, `${cls} edge dasharray ${seen[cls][1]}, want ${dash}`);
  }
  await page.screenshot({ path: path.join(dir, "verdict-classes.png") });
});

await t.step(`the table stays at its 2,000 rows for ${SECONDS} s`, async () => {
  await eventually(async () => (await rowCount()) === 2000, 30000, "2,000 rows");
  const until = Date.now() + SECONDS * 1000;
  while (Date.now() < until) {
    await page.waitForTimeout(1000);
    const rows = await rowCount();
    assert(rows === 2000, `table holds ${rows} rows`);
    const dom = await page.$$eval("[data-test=row]", (r) => r.length);
    assert(dom <= 2000, `${dom} row elements`);
  }
  const status = await page.textContent("[data-test=status]");
  assert(/[1-9][0-9.]* flows\/s/.test(status), `no rate in the status bar: ${status}`);
  assert(/lost events: \d+/.test(status), `no loss count in the status bar: ${status}`);
  await page.screenshot({ path: path.join(dir, "under-load.png") });
});

await t.step("pause holds the rows still and counts what arrives", async () => {
  await page.click("[data-test=pause]");
  await eventually(async () => /Resume/.test(await page.textContent("[data-test=pause]")), 10000, "paused");
  const before = await firstRows();
  await eventually(
    async () => Number(((await page.textContent("[data-test=pause]")).match(/\((\d+) new\)/) || [])[1]) > 0,
    10000,
    "new flows counted while paused",
  );
  assert((await firstRows()) === before, "rows changed while paused");
  await page.click("[data-test=pause]");
  await eventually(async () => (await firstRows()) !== before, 10000, "rows move again after resume");
});

await t.step("one namespace of 200 workloads shows its own", async () => {
  await page.selectOption("[data-test=namespace]", "team-3");
  await eventually(async () => {
    const shown = await page.$$eval("g.node", (n) => n.map((g) => g.dataset.namespace));
    return shown.filter((ns) => ns === "team-3").length === 20 && shown.length < 200;
  }, 10000, "team-3's 20 workloads and their peers");
  await page.screenshot({ path: path.join(dir, "namespace-under-load.png") });
  await page.selectOption("[data-test=namespace]", "");
});

await t.step("no page errors", async () => {
  assert(errors.length === 0, errors.join("\n"));
});

await browser.close();
server.kill();
process.exit(t.finish());
