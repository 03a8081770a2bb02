// Node runtime against a bare onnxruntime-node session on the same model, and the Python runtime
// on the same machine: batch-1 latency and batch-64 throughput of embed(). A benchmark, not a test.
//   node bench/node_bench.js [MODEL] [--python]   (from web/; MODEL defaults to ../models/default.onnx)
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";

import { EmbeddingModel } from "../src/index.js";
import { normalize } from "../src/preprocess.js";

const args = process.argv.slice(2);
const path = args.find((a) => !a.startsWith("--")) ?? "../models/default.onnx";
const ROUNDS = 15;

/** Median seconds per call of each of `fns` over ROUNDS rounds of `calls` calls, the functions taking
 * turns round by round so that load from other processes falls on all of them alike. */
async function medians(fns, calls) {
  for (const fn of fns) for (let i = 0; i < 3; i++) await fn();
  const times = fns.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, fn] of fns.entries()) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < calls; i++) await fn();
      times[k].push(Number(process.hrtime.bigint() - start) / 1e9 / calls);
    }
  }
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]);
}

const model = await EmbeddingModel.create(path);
const [h, w] = model.metadata.preprocess.size;
const c = model.metadata.preprocess.channels;
const image = () => ({ data: Uint8Array.from({ length: h * w * c }, () => (Math.random() < 0.15 ? 255 : 0)), width: w, height: h, channels: c });
const session = await ort.InferenceSession.create(readFileSync(path));
const rows = [];
for (const batch of [1, 64]) {
  const images = Array.from({ length: batch }, image);
  const input = new ort.Tensor("float32", normalize(model.prepare(images), model.metadata.preprocess), [batch, c, h, w]);
  const [bare, ours] = await medians([() => session.run({ [model.metadata.input_name]: input }), () => model.embed(images)],
    batch === 1 ? 200 : 20);
  rows.push({ batch, bare_ms: 1e3 * bare, runtime_ms: 1e3 * ours, overhead: ours / bare - 1, images_per_s: batch / ours });
}
if (args.includes("--python")) {
  const py = spawnSync(process.env.PYTHON || "python3", ["-c", `
import time, json, numpy as np
from edgemeta.runtime import EmbeddingModel
m = EmbeddingModel(${JSON.stringify(path)})
h, w = m.meta.preprocess.size
out = {}
for b in (1, 64):
    x = ((np.random.rand(b, h, w) < 0.15) * 255).astype(np.uint8)
    for _ in range(3): m.embed(x)
    t = []
    for _ in range(${ROUNDS}):
        s = time.perf_counter(); [m.embed(x) for _ in range(200 if b == 1 else 20)]; t.append((time.perf_counter() - s) / (200 if b == 1 else 20))
    out[b] = sorted(t)[len(t) // 2]
print(json.dumps(out))`], { encoding: "utf8" });
  const py_s = JSON.parse(py.stdout);
  rows.forEach((r) => { r.python_ms = 1e3 * py_s[r.batch]; });
}
console.log(JSON.stringify({ model: path, onnxruntime_node: ort.env.versions?.node ?? "?", rows }, null, 1));
