import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { EmbeddingModel, FewShotClassifier, ModelError, StoreError } from "../src/index.js";
import { makeFixture, pythonMissing, readImage, readJSON, runFixture } from "./helpers.js";

const missing = pythonMissing();
const fixture = missing ? null : makeFixture("classifier");
const index = fixture ? readJSON(fixture, "classifier.json") : null;

async function setup() {
  const model = await EmbeddingModel.create(index.model);
  const queries = index.queries.map((q) => readImage(fixture, q));
  return { model, queries };
}

function assertSamePredictions(got, want, what) {
  assert.equal(got.length, want.length);
  got.forEach((row, i) => {
    assert.deepEqual(row.map((p) => p.label), want[i].map((p) => p[0]), `${what}: labels of query ${i}`);
    row.forEach((p, k) => {
      assert.ok(Math.abs(p.score - want[i][k][1]) <= 1e-4, `${what}: score of query ${i} rank ${k}: ${p.score} vs ${want[i][k][1]}`);
      assert.ok(Math.abs(p.distance - want[i][k][2]) <= 1e-3 * Math.max(1, want[i][k][2]), `${what}: distance ${i}/${k}`);
    });
  });
}

test("the default model's metadata and fingerprint are Python's", { skip: missing }, async () => {
  const { model } = await setup();
  assert.equal(model.fingerprint, index.fingerprint);
  assert.equal(model.dim, index.query_embeddings[0].length);
});

test("embeddings match Python's within 1e-4", { skip: missing }, async () => {
  const { model, queries } = await setup();
  const emb = await model.embed(queries);
  const want = index.query_embeddings.flat();
  const diff = Math.max(...want.map((v, i) => Math.abs(v - emb[i])));
  assert.ok(diff <= 1e-4, `max abs difference ${diff}`);
});

test("enroll + predict + classify give Python's answers at every operating point", { skip: missing }, async () => {
  const { model, queries } = await setup();
  const clf = new FewShotClassifier(model);
  for (const [label, entries] of Object.entries(index.support)) {
    assert.equal(await clf.enroll(label, entries.map((e) => readImage(fixture, e))), 3);
  }
  assert.deepEqual(clf.labels, index.expected.labels);
  assertSamePredictions(await clf.predict(queries, { topK: 3 }), index.expected.top3, "enrolled in JS");
  for (const reject of ["strict", "balanced", "off"]) {
    assert.deepEqual(await clf.classify(queries, { reject }), index.expected.classify[reject], `reject=${reject}`);
  }
  for (const [far, want] of Object.entries(index.expected.classify_far)) {
    assert.deepEqual(await clf.classify(queries, { far: Number(far) }), want, `far=${far}`);
  }
  await assert.rejects(clf.classify(queries, { far: 0.9 }), /outside the model's calibration/);
  const decisions = index.expected.classify.balanced;
  assert.ok(decisions.some((x) => x === null) && decisions.some((x) => x !== null), "the fixture has accepted and rejected queries");
});

test("a store written by Python loads in JS with the same predictions, and the reverse", { skip: missing }, async () => {
  const { model, queries } = await setup();
  const fromPython = FewShotClassifier.load(readFileSync(join(fixture, "python_store.npz")), model);
  assertSamePredictions(await fromPython.predict(queries, { topK: 3 }), index.expected.top3, "Python store in JS");
  const path = join(fixture, "js_store.npz");
  const { writeFileSync } = await import("node:fs");
  writeFileSync(path, fromPython.save());
  const back = JSON.parse(runFixture("check-store", fixture, path));
  assert.deepEqual(back.classify, index.expected.classify);
  assert.deepEqual(back.top3.map((r) => r.map((p) => p[0])), index.expected.top3.map((r) => r.map((p) => p[0])));
  back.top3.flat().forEach((p, i) => assert.ok(Math.abs(p[1] - index.expected.top3.flat()[i][1]) < 1e-9, "store round trip keeps scores"));
});

test("remove, labels and bad input", { skip: missing }, async () => {
  const { model, queries } = await setup();
  const clf = new FewShotClassifier(model);
  await assert.rejects(clf.predict(queries[0]), /no classes enrolled/);
  await clf.enroll("a", queries[0]);
  await clf.enroll("b", [queries[1], queries[2]]);
  assert.deepEqual(clf.labels, ["a", "b"]);
  assert.deepEqual(clf.counts(), { a: 1, b: 2 });
  clf.remove("a");
  assert.deepEqual(clf.labels, ["b"]);
  assert.throws(() => clf.remove("a"), /no class named "a"/);
  await assert.rejects(clf.enroll("", queries[0]), /must not be empty/);
  await assert.rejects(clf.enroll("x", { data: new Uint8Array(10), width: 4, height: 4, channels: 1 }), /holds 10 values/);
  await assert.rejects(clf.enroll("x", { data: new Uint8Array(16), width: 4, height: 4, channels: 1 }), /under the minimum/);
  assert.throws(() => new FewShotClassifier(model, { reject: "lenient" }), /reject must be one of/);
});

test("a store of another model is refused", { skip: missing }, async () => {
  const dir = makeFixture("preprocess");
  const tiny = await EmbeddingModel.create(join(dir, "gray_bilinear.onnx"));
  assert.throws(() => FewShotClassifier.load(readFileSync(join(fixture, "python_store.npz")), tiny),
    (e) => e instanceof StoreError && /was made with another model .*re-enroll/.test(e.message));
  assert.throws(() => FewShotClassifier.load(new Uint8Array([1, 2, 3]), tiny), /corrupted or not an edgemeta store/);
});

test("files of one network share stores, as in Python (default.onnx and default.int8.onnx)", { skip: missing }, async () => {
  const int8 = await EmbeddingModel.create(index.model.replace(/default\.onnx$/, "default.int8.onnx"));
  assert.notEqual(int8.fingerprint, index.fingerprint);
  const clf = FewShotClassifier.load(readFileSync(join(fixture, "python_store.npz")), int8);
  assert.deepEqual(clf.labels, index.expected.labels);
  const path = join(fixture, "int8_store.npz");
  const { writeFileSync } = await import("node:fs");
  writeFileSync(path, clf.save());
  const back = JSON.parse(runFixture("check-store", fixture, path)); // Python loads it with default.onnx
  assert.deepEqual(back.labels, index.expected.labels);
});

test("non-edgemeta models and baked classifiers are refused", { skip: missing }, async () => {
  const dir = makeFixture("preprocess");
  await assert.rejects(EmbeddingModel.create(join(dir, "no_metadata.onnx")),
    (e) => e instanceof ModelError && /no edgemeta metadata/.test(e.message));
  await assert.rejects(EmbeddingModel.create(join(dir, "baked.onnx")), /baked classifier/);
  await assert.rejects(EmbeddingModel.create(join(dir, "missing.onnx")), /model not found/);
  await assert.rejects(EmbeddingModel.create(new Uint8Array([8, 1, 2])), ModelError);
});
