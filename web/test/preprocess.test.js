import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { prepare } from "../src/preprocess.js";
import { readOnnxMetadata } from "../src/onnxmeta.js";
import { makeFixture, pythonMissing, readImage, readJSON } from "./helpers.js";

const missing = pythonMissing();

test("prepare() is bit-exact with Python's prepare on random sizes, channels, filters and aspect policies", { skip: missing }, () => {
  const dir = makeFixture("preprocess");
  const cases = readJSON(dir, "preprocess.json");
  const specs = {};
  let checked = 0;
  for (const c of cases) {
    specs[c.model] ??= JSON.parse(readOnnxMetadata(readFileSync(join(dir, c.model))).edgemeta).preprocess;
    const got = prepare(readImage(dir, c), specs[c.model]);
    const want = new Uint8Array(readFileSync(join(dir, c.prepared)));
    assert.equal(got.length, want.length, `${c.file}: length`);
    const diff = got.findIndex((v, i) => v !== want[i]);
    assert.equal(diff, -1, `${c.file} (${c.width}x${c.height}x${c.channels}, ${c.model}): first difference at ${diff}`);
    checked++;
  }
  assert.equal(checked, cases.length);
  assert.ok(checked >= 300);
  // Every policy is covered, "stretch" also by files without the field (read as it).
  const aspects = new Set(Object.values(specs).map((s) => s.aspect ?? "stretch"));
  assert.deepEqual([...aspects].sort(), ["center_crop", "letterbox", "stretch"]);
  assert.ok(Object.values(specs).some((s) => s.aspect === undefined));
});
