// The README's JavaScript example, run as written (from the repository root, as its paths assume).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = join(web, "..");

test("the README's JavaScript example runs and prints what its comments say", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("#### In JavaScript"));
  const code = /```js\n([\s\S]*?)```/.exec(section)[1];
  // The bare name resolves where the package is installed; here it is the working tree's web/.
  const runnable = code.replace('from "edgemeta"', `from ${JSON.stringify(pathToFileURL(join(web, "src", "index.js")).href)}`);
  const file = join(mkdtempSync(join(tmpdir(), "edgemeta-readme-")), "example.mjs");
  writeFileSync(file, runnable);
  const r = spawnSync(process.execPath, [file], { cwd: root, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\[ 'thin', 'thick' \]/);
  assert.match(r.stdout, /label: 'thin',\s+score: [\d.e-]+,\s+distance: [\d.e-]+/);
  assert.equal(r.stdout.trim().split("\n").pop(), "[ 'thin', 'thick' ]", "classify: each stroke is its own class");
});
