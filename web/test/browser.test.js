// End to end in headless Chromium: the page served by `edgemeta web`, taught 5 classes with strokes
// drawn by real mouse events, classifies new drawings made with the mouse, touch and a pen alike; the
// preset comes from the examples' manifest; a screenshot PNG is written. Then offline: after one
// visit the service worker serves a reload with the network gone, and refreshes on a new model.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { pythonMissing } from "./helpers.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const chromium = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
let puppeteer = null;
try {
  puppeteer = (await import("puppeteer-core")).default;
} catch { /* a dev dependency: absent after npm ci --omit=dev */ }
const skip = !chromium ? "no Chromium installed (apt-get install chromium, or set CHROMIUM)"
  : !puppeteer ? "puppeteer-core is not installed (npm ci --ignore-scripts)" : pythonMissing();

// Five symbols as polylines in a 0..1 box; each drawing is jittered.
const SHAPES = {
  bar: [[[0.5, 0.15], [0.5, 0.85]]],
  cross: [[[0.2, 0.2], [0.8, 0.8]], [[0.8, 0.2], [0.2, 0.8]]],
  ring: [Array.from({ length: 25 }, (_, i) => [0.5 + 0.3 * Math.cos((i / 24) * 2 * Math.PI), 0.5 + 0.3 * Math.sin((i / 24) * 2 * Math.PI)])],
  zigzag: [[[0.15, 0.3], [0.35, 0.7], [0.5, 0.3], [0.65, 0.7], [0.85, 0.3]]],
  hook: [[[0.3, 0.15], [0.3, 0.75], [0.5, 0.85], [0.7, 0.75]]],
};

function serve(port = 0, ...options) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.env.PYTHON || "python3", ["-m", "edgemeta", "web", "--port", String(port), ...options], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => resolve({ child, url: String(d).trim().split("\n")[0] }));
    child.on("exit", (code) => reject(new Error(`edgemeta web exited (${code}): ${err}`)));
  });
}

/** Puppeteer's mouse.move(..., {steps}) path: each segment in `steps` equal moves. */
function interpolate(pts, steps = 6) {
  const out = [pts[0]];
  for (let i = 1; i < pts.length; i++) {
    const [[x0, y0], [x1, y1]] = [pts[i - 1], pts[i]];
    for (let k = 1; k <= steps; k++) out.push([x0 + (x1 - x0) * (k / steps), y0 + (y1 - y0) * (k / steps)]);
  }
  return out;
}

const penSessions = new WeakMap();

// One stroke through `pts` (page pixels) with each input device: real mouse events, touch events
// (CDP Input.dispatchTouchEvent) and pen pointer events (CDP mouse events with pointerType "pen").
const DEVICES = {
  async mouse(page, pts) {
    await page.mouse.move(...pts[0]);
    await page.mouse.down();
    for (const p of pts.slice(1)) await page.mouse.move(...p);
    await page.mouse.up();
  },
  async touch(page, pts) {
    await page.touchscreen.touchStart(...pts[0]);
    for (const p of pts.slice(1)) await page.touchscreen.touchMove(...p);
    await page.touchscreen.touchEnd();
  },
  async pen(page, pts) {
    if (!penSessions.has(page)) penSessions.set(page, await page.createCDPSession());
    const cdp = penSessions.get(page);
    const send = (type, [x, y], buttons) => cdp.send("Input.dispatchMouseEvent",
      { type, x, y, button: "left", buttons, clickCount: 1, pointerType: "pen", force: buttons ? 0.5 : 0 });
    await send("mouseMoved", pts[0], 0);
    await send("mousePressed", pts[0], 1);
    for (const p of pts.slice(1)) await send("mouseMoved", p, 1);
    await send("mouseReleased", pts.at(-1), 0);
  },
};

/** Draw `shape` (jittered by `seed`) with `device` on a cleared pad; resolves once the page has
 * predicted after every stroke. */
async function draw(page, shape, seed, device = "mouse") {
  const box = await (await page.$("#pad")).boundingBox();
  let s = seed;
  const jitter = () => { s = (s * 16807) % 2147483647; return (s / 2147483647 - 0.5) * 0.06; };
  const dx = jitter(), dy = jitter();
  await page.click("#clear");
  const before = await page.evaluate(() => Number(document.body.dataset.predictions ?? 0));
  const taught = await page.$$eval("#classes li", (items) => items.length);
  for (const stroke of SHAPES[shape]) {
    const pts = stroke.map(([x, y]) => [box.x + (x + dx + jitter()) * box.width, box.y + (y + dy + jitter()) * box.height]);
    await DEVICES[device](page, interpolate(pts));
  }
  if (taught > 0) {
    await page.waitForFunction((n) => Number(document.body.dataset.predictions ?? 0) >= n, {}, before + SHAPES[shape].length);
  }
}

/** The pad's ink (dark pixels) as a 0/1 string. */
function ink(page) {
  return page.$eval("#pad", (pad) => {
    const { data } = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height);
    let out = "";
    for (let i = 0; i < data.length; i += 4) out += data[i] < 128 ? "1" : "0";
    return out;
  });
}

/** Intersection over union of two ink masks. */
function overlap(a, b) {
  let both = 0, either = 0;
  for (let i = 0; i < a.length; i++) { both += a[i] === "1" && b[i] === "1"; either += a[i] === "1" || b[i] === "1"; }
  return either ? both / either : 0;
}

test("draw to teach in Chromium: 5 classes taught with the mouse, new drawings by mouse, touch and pen classified", { skip, timeout: 300_000 }, async (t) => {
  const { child, url } = await serve();
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    const requested = [];
    page.on("request", (r) => requested.push(new URL(r.url()).pathname));
    await page.goto(url);
    await page.waitForSelector("body[data-ready='1']", { timeout: 120_000 });
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, "COOP/COEP make the page cross-origin isolated");
    await page.$eval("#pad", (pad) => {
      window.pointerTypes = [];
      pad.addEventListener("pointerdown", (e) => window.pointerTypes.push(e.pointerType));
    });
    let seed = 1;
    for (const shape of Object.keys(SHAPES)) {
      for (let i = 0; i < 3; i++) {
        await draw(page, shape, seed++);
        await page.$eval("#label", (el, v) => { el.value = v; }, shape);
        await page.click("#add");
        await page.waitForFunction((n) => document.querySelectorAll("#classes li").length === n, {}, Object.keys(SHAPES).indexOf(shape) + 1);
      }
    }
    const right = { mouse: 0, touch: 0, pen: 0 };
    for (const shape of Object.keys(SHAPES)) {
      const drawn = {};
      seed++;
      for (const device of Object.keys(right)) {
        await page.evaluate(() => { window.pointerTypes = []; });
        await draw(page, shape, 1000 + seed, device);
        drawn[device] = await ink(page);
        assert.deepEqual(new Set(await page.evaluate(() => window.pointerTypes)), new Set([device]), `${device}: the page saw ${device} pointer events`);
        const nearest = await page.evaluate(() => document.body.dataset.nearest);
        const decision = await page.$eval("#decision", (el) => el.textContent);
        t.diagnostic(`${shape} by ${device}: nearest ${nearest}; ${decision}; ${await page.$eval("#latency", (el) => el.textContent)}`);
        right[device] += nearest === shape;
      }
      for (const device of ["touch", "pen"]) {
        const iou = overlap(drawn.mouse, drawn[device]);
        t.diagnostic(`${shape}: ink overlap of ${device} and mouse ${iou.toFixed(3)}`);
        assert.ok(iou > 0.9, `${shape}: the ${device} strokes land where the mouse's did (ink overlap ${iou.toFixed(3)})`);
      }
    }
    const manifest = JSON.parse(readFileSync(join(root, "models", "examples", "manifest.json"), "utf8"));
    await page.click("#preset"); // the shipped examples listed by models/examples/manifest.json
    await page.waitForFunction(() => /Loaded \d+ classes/.test(document.getElementById("status").textContent), { timeout: 60_000 });
    const classes = await page.$$eval("#classes li", (items) => items.length);
    t.diagnostic(`after the preset: ${classes} classes`);
    assert.equal(classes, Object.keys(SHAPES).length + manifest.sets[manifest.preset.set].length, "the preset adds the manifest's classes");
    assert.deepEqual(requested.filter((p) => p.endsWith("/") && p !== "/demo/"), [], "no directory listing is read: any static server will do");
    await page.waitForFunction((n) => document.body.dataset.kept === String(n), {}, classes);
    await page.reload();
    await page.waitForSelector("body[data-ready='1']", { timeout: 120_000 });
    assert.equal(await page.$$eval("#classes li", (items) => items.length), classes, "IndexedDB keeps the store across a reload");
    const shot = join(process.env.EDGEMETA_SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "edgemeta-web-")), "demo.png");
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);
    const n = Object.keys(SHAPES).length;
    assert.deepEqual(right, { mouse: n, touch: n, pen: n }, "every new drawing, by mouse, touch or pen, is nearest its own class");
  } finally {
    await browser.close();
    child.kill();
  }
});

test("offline once loaded: after one visit a reload with the network gone is served by the service worker, taught and classifies", { skip, timeout: 300_000 }, async (t) => {
  const { child, url } = await serve();
  let served = ""; // the server's access log: every request that reached the network
  child.stderr.on("data", (d) => { served += d; });
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    // Four onnxruntime threads (whatever this machine has), so their worker scripts must be cached too.
    await (await page.createCDPSession()).send("Emulation.setHardwareConcurrencyOverride", { hardwareConcurrency: 8 });
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.offline && navigator.serviceWorker.controller, { timeout: 120_000 });
    const worker = await browser.waitForTarget((target) => target.type() === "service_worker");
    const workerNet = await worker.createCDPSession();
    await workerNet.send("Network.enable");
    await workerNet.send("Network.emulateNetworkConditions", { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.setOfflineMode(true);
    const online = served.length;
    const requests = [];
    page.on("request", (r) => requests.push(r));
    await page.reload();
    await page.waitForSelector("body[data-ready='1']", { timeout: 120_000 });
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, "cached responses keep COOP/COEP: still cross-origin isolated");
    const shapes = ["bar", "cross", "ring"];
    let seed = 7;
    for (const [i, shape] of shapes.entries()) {
      for (let k = 0; k < 2; k++) {
        await draw(page, shape, seed++);
        await page.$eval("#label", (el, v) => { el.value = v; }, shape);
        await page.click("#add");
        await page.waitForFunction((n) => document.querySelectorAll("#classes li").length === n, {}, i + 1);
      }
    }
    for (const shape of shapes) {
      await draw(page, shape, 500 + seed++);
      t.diagnostic(`offline, ${shape}: ${await page.$eval("#decision", (el) => el.textContent)}; ${await page.$eval("#latency", (el) => el.textContent)}`);
      assert.equal(await page.evaluate(() => document.body.dataset.nearest), shape, `offline, a new ${shape} is nearest its class`);
    }
    await page.click("#preset"); // the manifest and the preset's images come from the cache too
    await page.waitForFunction(() => /Loaded \d+ classes|No shipped examples/.test(document.getElementById("status").textContent), { timeout: 60_000 });
    assert.match(await page.$eval("#status", (el) => el.textContent), /Loaded \d+ classes/, "offline, the shipped examples load");
    const paths = requests.map((r) => new URL(r.url()).pathname);
    t.diagnostic(`offline reload: ${requests.length} requests, ${paths.filter((p) => p.endsWith(".mjs")).length} of onnxruntime-web's .mjs (page and thread workers)`);
    assert.ok(paths.includes("/model.onnx") && paths.some((p) => p.endsWith(".wasm")), "the model and the .wasm were requested again");
    assert.ok(paths.filter((p) => p.endsWith(".mjs")).length > 1, "onnxruntime-web started thread workers");
    assert.deepEqual(requests.filter((r) => !r.response()?.fromServiceWorker()).map((r) => r.url()), [], "the service worker answered every request");
    // The browser's own update check of the worker script (not emulated offline; offline it fails
    // and the installed worker stays) is the one request that may still reach the server.
    const reached = served.slice(online).split("\n").filter((line) => line.includes('"GET ') && !line.includes('"GET /demo/sw.js '));
    assert.deepEqual(reached, [], "no request of the page or its service worker reached the server once offline");
  } finally {
    await browser.close();
    child.kill();
  }
});

test("the offline copy refreshes: a new model on the server is cached as a new version, used from the next reload", { skip, timeout: 300_000 }, async () => {
  let server = await serve();
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox"] });
  const version = (page) => page.evaluate(() => document.body.dataset.offline);
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.offline && navigator.serviceWorker.controller, { timeout: 120_000 });
    const first = await version(page);
    server.child.kill();
    await new Promise((resolve) => server.child.once("exit", resolve));
    const other = join(root, "models", "vinyals.onnx");
    server = await serve(new URL(server.url).port, "--model", other); // same origin, another model
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.offline, { timeout: 120_000 });
    assert.notEqual(await version(page), first, "a changed model makes a new cache version");
    assert.match(await page.$eval("#status", (el) => el.textContent), /reload to run it/);
    const second = await version(page);
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.offline, { timeout: 120_000 });
    assert.equal(await version(page), second, "nothing changed since: the same version");
    const served = await page.evaluate(async () => (await (await fetch("../model.onnx")).arrayBuffer()).byteLength);
    assert.equal(served, readFileSync(other).length, "the cache now serves the new model");
  } finally {
    await browser.close();
    server.child.kill();
  }
});
