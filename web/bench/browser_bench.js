// Chromium (headless, WASM) figures for the demo page served by `edgemeta web`: page load until
// the model is ready, bytes downloaded, embed() latency at batch 1 and throughput at batch 64.
// A benchmark, not a test:  node bench/browser_bench.js   (from web/; needs Chromium, CHROMIUM=path)
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import puppeteer from "puppeteer-core";

const chromium = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
const server = spawn(process.env.PYTHON || "python3", ["-m", "edgemeta", "web", "--port", "0"], { stdio: ["ignore", "pipe", "ignore"] });
const url = await new Promise((resolve) => server.stdout.once("data", (d) => resolve(String(d).trim())));
const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  let bytes = 0;
  // Content-Length as sent: the .wasm is compiled while streaming, so its body is not kept for us.
  page.on("response", (r) => { bytes += Number(r.headers()["content-length"] ?? 0); });
  const start = Date.now();
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 120_000 });
  const loadMs = Date.now() - start;
  const inPage = await page.evaluate(async () => {
    const { EmbeddingModel } = await import("/src/index.js");
    const model = await EmbeddingModel.create("/model.onnx");
    const [h, w] = model.metadata.preprocess.size;
    const image = () => ({ data: Uint8Array.from({ length: h * w }, () => (Math.random() < 0.15 ? 0 : 255)), width: w, height: h, channels: 1 });
    const median = async (batch, calls) => {
      const images = Array.from({ length: batch }, image);
      for (let i = 0; i < 3; i++) await model.embed(images);
      const t = [];
      for (let r = 0; r < 9; r++) {
        const s = performance.now();
        for (let i = 0; i < calls; i++) await model.embed(images);
        t.push((performance.now() - s) / calls);
      }
      return t.sort((a, b) => a - b)[4];
    };
    const one = await median(1, 50);
    const many = await median(64, 5);
    return { batch1_ms: one, batch64_ms: many, batch64_images_per_s: 64000 / many, threads: globalThis.crossOriginIsolated ? "isolated (WASM threads)" : "not isolated" };
  });
  console.log(JSON.stringify({ browser: await browser.version(), page_load_to_model_ready_ms: loadMs, bytes_downloaded: bytes, ...inPage }, null, 1));
} finally {
  await browser.close();
  server.kill();
}
