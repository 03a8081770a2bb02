// Shared by the tests: run the Python fixture script, read the raw images it writes.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const python = process.env.PYTHON || "python3";

/** The real data folder as the Python tests find it: EDGEMETA_DATA, else ../shared/data beside the
 * repository; null when neither is there. */
export function dataRoot() {
  const root = process.env.EDGEMETA_DATA || join(here, "..", "..", "..", "shared", "data");
  return existsSync(root) ? root : null;
}

/** Why the Python side cannot make fixtures here, or false when it can (node:test skips on null). */
export function pythonMissing() {
  const r = spawnSync(python, ["-c", "import edgemeta.runtime, onnx"], { encoding: "utf8" });
  return r.status === 0 ? false : `python with edgemeta and onnx is not importable (${python}): ${(r.stderr || r.error || "").toString().trim().split("\n").pop()}`;
}

/** Run `fixtures.py command dir ...extra` and return its stdout; throws with its stderr on failure. */
export function runFixture(command, dir, ...extra) {
  const r = spawnSync(python, [join(here, "fixtures.py"), command, dir, ...extra],
    { encoding: "utf8", maxBuffer: 1 << 28, cwd: join(here, "..", "..") });
  if (r.status !== 0) throw new Error(`fixtures.py ${command} failed:\n${r.stderr}`);
  return r.stdout;
}

/** A new fixture folder made by `fixtures.py command`. */
export function makeFixture(command) {
  const dir = mkdtempSync(join(tmpdir(), `edgemeta-web-${command}-`));
  runFixture(command, dir);
  return dir;
}

/** One raw image written by fixtures.py as {data, width, height, channels}. */
export function readImage(dir, entry) {
  const data = new Uint8Array(readFileSync(join(dir, entry.file)));
  return { data, width: entry.width, height: entry.height, channels: entry.channels };
}

export function readJSON(dir, name) {
  return JSON.parse(readFileSync(join(dir, name), "utf8"));
}
