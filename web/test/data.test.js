// Parity on real data (EDGEMETA_DATA): 1,000 Omniglot evaluation and 1,000 MNIST test images,
// decoded once by the fixture script and fed to both runtimes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { EmbeddingModel, FewShotClassifier } from "../src/index.js";
import { dataRoot, makeFixture, pythonMissing, readJSON } from "./helpers.js";

const root = dataRoot();
if (root) process.env.EDGEMETA_DATA = root;  // for the fixture script
const skip = !root ? "real data not found: set EDGEMETA_DATA or place ../shared/data beside the repo" : pythonMissing();

/** The images of one data set as pixel objects (1 channel), sharing the fixture's buffer. */
function loadImages(dir, name, shape) {
  const bytes = new Uint8Array(readFileSync(join(dir, `${name}.u8`)));
  const [n, h, w] = shape;
  return Array.from({ length: n }, (_, i) => ({ data: bytes.subarray(i * h * w, (i + 1) * h * w), width: w, height: h, channels: 1 }));
}

test("Omniglot and MNIST: same embeddings, top-1 and accept/reject as Python", { skip }, async (t) => {
  const dir = makeFixture("data");
  const index = readJSON(dir, "data.json");
  const model = await EmbeddingModel.create(index.model);
  for (const [name, set] of Object.entries(index.sets)) {
    const images = loadImages(dir, name, set.shape);
    assert.equal(images.length, 1000);
    const want = new Float32Array(readFileSync(join(dir, `${name}.f32`)).buffer.slice(0));
    const got = await model.embed(images);
    const diff = want.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i])), 0);
    t.diagnostic(`${name}: ${images.length} images, embeddings max abs difference ${diff.toExponential(2)}`);
    assert.ok(diff <= 1e-4, `${name}: embeddings differ by ${diff}`);
    for (const [kind, episodes] of Object.entries(set.episodes)) {
      let queries = 0, sameTop1 = 0, sameDecision = 0, decisions = 0, accepted = 0;
      for (const ep of episodes) {
        const clf = new FewShotClassifier(model);
        for (const [label, idx] of Object.entries(ep.support)) await clf.enroll(label, idx.map((i) => images[i]));
        const q = ep.queries.map((i) => images[i]);
        const preds = await clf.predict(q);
        preds.forEach((p, i) => { sameTop1 += p[0].label === ep.top1[i]; });
        queries += q.length;
        for (const reject of ["strict", "balanced"]) {
          clf.accepts(preds, { reject }).forEach((ok, i) => { sameDecision += ok === ep.accepted[reject][i]; accepted += ok; });
          decisions += q.length;
        }
      }
      t.diagnostic(`${name} ${kind}: ${episodes.length} episodes, ${queries} queries: identical top-1 ${sameTop1}/${queries}, ` +
        `identical accept/reject ${sameDecision}/${decisions} (${accepted} accepted)`);
      assert.equal(sameTop1, queries, `${name} ${kind}: top-1`);
      assert.equal(sameDecision, decisions, `${name} ${kind}: accept/reject`);
      assert.ok(accepted > 0 && accepted < decisions, "the episodes have accepted and rejected queries");
    }
  }
});
