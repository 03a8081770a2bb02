// End to end in headless Chromium: the page served by `edgemeta web`, taught 5 classes with strokes
// drawn by real mouse events, classifies new drawings; a screenshot PNG is written.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { pythonMissing } from "./helpers.js";

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

function serve() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.env.PYTHON || "python3", ["-m", "edgemeta", "web", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => resolve({ child, url: String(d).trim().split("\n")[0] }));
    child.on("exit", (code) => reject(new Error(`edgemeta web exited (${code}): ${err}`)));
  });
}

async function draw(page, shape, seed) {
  const box = await (await page.$("#pad")).boundingBox();
  let s = seed;
  const jitter = () => { s = (s * 16807) % 2147483647; return (s / 2147483647 - 0.5) * 0.06; };
  const dx = jitter(), dy = jitter();
  await page.click("#clear");
  for (const stroke of SHAPES[shape]) {
    const pts = stroke.map(([x, y]) => [box.x + (x + dx + jitter()) * box.width, box.y + (y + dy + jitter()) * box.height]);
    await page.mouse.move(...pts[0]);
    await page.mouse.down();
    for (const p of pts.slice(1)) await page.mouse.move(...p, { steps: 6 });
    await page.mouse.up();
  }
}

test("draw to teach in Chromium: 5 classes taught with the mouse, new drawings classified", { skip, timeout: 300_000 }, async (t) => {
  const { child, url } = await serve();
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForSelector("body[data-ready='1']", { timeout: 120_000 });
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, "COOP/COEP make the page cross-origin isolated");
    let seed = 1;
    for (const shape of Object.keys(SHAPES)) {
      for (let i = 0; i < 3; i++) {
        await draw(page, shape, seed++);
        await page.$eval("#label", (el, v) => { el.value = v; }, shape);
        await page.click("#add");
        await page.waitForFunction((n) => document.querySelectorAll("#classes li").length === n, {}, Object.keys(SHAPES).indexOf(shape) + 1);
      }
    }
    let right = 0;
    for (const shape of Object.keys(SHAPES)) {
      const before = await page.evaluate(() => Number(document.body.dataset.predictions ?? 0));
      await draw(page, shape, 1000 + seed++);
      await page.waitForFunction((n) => Number(document.body.dataset.predictions ?? 0) > n, {}, before);
      const nearest = await page.evaluate(() => document.body.dataset.nearest);
      const decision = await page.$eval("#decision", (el) => el.textContent);
      t.diagnostic(`${shape}: nearest ${nearest}; ${decision}; ${await page.$eval("#latency", (el) => el.textContent)}`);
      right += nearest === shape;
    }
    await page.click("#preset"); // the shipped Omniglot examples, five drawings per class
    await page.waitForFunction(() => /Loaded \d+ classes/.test(document.getElementById("status").textContent), { timeout: 60_000 });
    const classes = await page.$$eval("#classes li", (items) => items.length);
    t.diagnostic(`after the preset: ${classes} classes`);
    assert.ok(classes > Object.keys(SHAPES).length, "the preset adds the shipped example classes");
    await page.waitForFunction((n) => document.body.dataset.kept === String(n), {}, classes);
    await page.reload();
    await page.waitForSelector("body[data-ready='1']", { timeout: 120_000 });
    assert.equal(await page.$$eval("#classes li", (items) => items.length), classes, "IndexedDB keeps the store across a reload");
    const shot = join(process.env.EDGEMETA_SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "edgemeta-web-")), "demo.png");
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);
    assert.equal(right, Object.keys(SHAPES).length, "every new drawing is nearest its own class");
  } finally {
    await browser.close();
    child.kill();
  }
});
