// 3-channel models (polarity none, per-channel mean/std, letterbox and center_crop) give Python's
// answers: tiny convolutional colour models and gray/RGB/RGBA images of many sizes, made by the
// Python side at test time (rgb_fixture.py).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { EmbeddingModel, FewShotClassifier } from "../src/index.js";
import { makeFixture, pythonMissing, readImage, readJSON, runFixture } from "./helpers.js";

const missing = pythonMissing();
const fixture = missing ? null : makeFixture("rgb");
const index = fixture ? readJSON(fixture, "rgb.json") : null;
const names = index ? Object.keys(index.models) : ["rgb_letterbox", "rgb_crop"];

function assertSamePredictions(got, want, what) {
  assert.equal(got.length, want.length);
  got.forEach((row, i) => {
    assert.deepEqual(row.map((p) => p.label), want[i].map((p) => p[0]), `${what}: labels of query ${i}`);
    row.forEach((p, k) => {
      assert.ok(Math.abs(p.score - want[i][k][1]) <= 1e-4, `${what}: score ${i}/${k}: ${p.score} vs ${want[i][k][1]}`);
      assert.ok(Math.abs(p.distance - want[i][k][2]) <= 1e-4 * Math.max(1, want[i][k][2]), `${what}: distance ${i}/${k}`);
    });
  });
}

async function setup(name) {
  const want = index.models[name];
  const model = await EmbeddingModel.create(want.path);
  const queries = index.queries.map((q) => readImage(fixture, q));
  return { want, model, queries };
}

async function enrolled(model) {
  const clf = new FewShotClassifier(model);
  for (const [label, entries] of Object.entries(index.support)) await clf.enroll(label, entries.map((e) => readImage(fixture, e)));
  return clf;
}

for (const name of names) {
  test(`${name}: 3 channels read from the model, embeddings within 1e-4 of Python's on gray, RGB and RGBA of many sizes`, { skip: missing }, async () => {
    const { want, model, queries } = await setup(name);
    const spec = model.metadata.preprocess;
    assert.equal(spec.channels, 3);
    assert.equal(spec.polarity, "none");
    assert.equal(new Set(spec.mean).size, 3, "per-channel mean");
    assert.equal(model.fingerprint, want.fingerprint);
    assert.deepEqual(new Set(index.queries.map((q) => q.channels)), new Set([1, 3, 4]));
    assert.ok(new Set(index.queries.map((q) => `${q.width}x${q.height}`)).size > 10, "many sizes and aspects");
    model.prepare(queries.slice(0, want.prepared.length)).forEach((img, i) => {
      assert.deepEqual([...img], want.prepared[i], `prepared pixels of query ${i}`);
    });
    const emb = await model.embed(queries);
    const flat = want.embeddings.flat();
    assert.equal(emb.length, flat.length);
    const diff = Math.max(...flat.map((v, i) => Math.abs(v - emb[i])));
    assert.ok(diff <= 1e-4, `max abs difference ${diff}`);
  });

  test(`${name}: enroll, predict, classify and 3 query views give Python's answers`, { skip: missing }, async () => {
    const { want, model, queries } = await setup(name);
    const clf = await enrolled(model);
    assert.deepEqual(clf.labels, want.expected.labels);
    assertSamePredictions(await clf.predict(queries, { topK: 3 }), want.expected.top3, "enrolled in JS");
    for (const reject of ["strict", "balanced", "off"]) {
      assert.deepEqual(await clf.classify(queries, { reject }), want.expected.classify[reject], `reject=${reject}`);
    }
    for (const [far, labels] of Object.entries(want.expected.classify_far)) {
      assert.deepEqual(await clf.classify(queries, { far: Number(far) }), labels, `far=${far}`);
    }
    const decisions = want.expected.classify.balanced;
    assert.ok(decisions.includes(null) && decisions.some((x) => x !== null), "the fixture has accepted and rejected queries");
    const views = FewShotClassifier.load(clf.save(), model, { queryViews: 3 });
    assertSamePredictions(await views.predict(queries, { topK: 3 }), want.top3_views3, "3 query views");
  });

  test(`${name}: a store written by Python loads in JS with the same answers, and the reverse`, { skip: missing }, async () => {
    const { want, model, queries } = await setup(name);
    const fromPython = FewShotClassifier.load(readFileSync(join(fixture, `${name}_python_store.npz`)), model);
    assertSamePredictions(await fromPython.predict(queries, { topK: 3 }), want.expected.top3, "Python store in JS");
    const path = join(fixture, `${name}_js_store.npz`);
    writeFileSync(path, (await enrolled(model)).save());
    const back = JSON.parse(runFixture("check-rgb-store", fixture, name, path));
    assert.deepEqual(back.labels, want.expected.labels);
    assert.deepEqual(back.classify, want.expected.classify);
    assertSamePredictions(back.top3.map((r) => r.map(([label, score, distance]) => ({ label, score, distance }))),
      want.expected.top3, "JS store in Python");
  });
}
