// Shared helpers of the UI's browser tests: Debian's Chromium through playwright-core (never a
// downloaded browser), a tiny step runner that prints the closing "N passed, N failed" line,
// and the page's own selectors (data-test attributes set in ui/src/app.rs).
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export function artifacts() {
  const dir = process.env.ARTIFACTS || path.resolve("artifacts");
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Runs named steps in order; a failed step is reported and the rest still run. */
export class Steps {
  constructor(page, dir) {
    this.page = page;
    this.dir = dir;
    this.passed = 0;
    this.failed = 0;
  }

  async step(name, fn) {
    const started = Date.now();
    try {
      await fn();
      this.passed += 1;
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    } catch (err) {
      this.failed += 1;
      console.log(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
      const file = path.join(this.dir, `failed-${name.replace(/[^a-z0-9]+/gi, "-")}.png`);
      await this.page.screenshot({ path: file }).catch(() => {});
    }
  }

  finish() {
    console.log(`${this.passed} passed, ${this.failed} failed`);
    return this.failed === 0 ? 0 : 1;
  }
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function eventually(fn, ms, what) {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`not within ${ms} ms: ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const node = (id) => `g.node[data-node="${id}"]`;
export const edge = (src, dst) => `g.edge[data-source="${src}"][data-destination="${dst}"]`;

/** Stroke colour of an edge's line, as computed by the browser. */
export async function edgeColour(page, src, dst, port) {
  return page.evaluate(
    ([src, dst, port]) => {
      const all = [...document.querySelectorAll(`g.edge[data-source="${src}"][data-destination="${dst}"]`)];
      const e = all.find((g) => port === undefined || g.dataset.edge.includes(`:${port}/`));
      if (!e) return null;
      return { class: e.dataset.class, stroke: getComputedStyle(e.querySelector(".line")).stroke, id: e.dataset.edge };
    },
    [src, dst, port],
  );
}

/** Starts recording long tasks (over 50 ms) in the page: `{ start, duration }` in ms. */
export async function watchLongTasks(page) {
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: "longtask", buffered: true });
  });
}

export async function longTasks(page) {
  return page.evaluate(() => window.__longTasks || []);
}

/** A free TCP port on loopback. */
export async function freePort() {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `replay-server.mjs` (the UI's stand-in observer) sending `rate` flows/s on `port`;
 * resolves with the child once it listens. Its later messages pass through to stderr.
 */
export async function startReplayServer(port, rate) {
  const { spawn } = await import("node:child_process");
  const here = path.dirname(new URL(import.meta.url).pathname);
  const server = spawn(process.execPath, [path.join(here, "replay-server.mjs"), String(port), String(rate)], {
    stdio: ["ignore", "inherit", "pipe"],
  });
  await new Promise((resolve, reject) => {
    server.stderr.on("data", (d) => {
      process.stderr.write(d);
      if (String(d).includes("flows/s on")) resolve();
    });
    server.on("exit", (code) => reject(new Error(`replay server exited: ${code}`)));
  });
  return server;
}
