// The prototype store file of runtime/store.py: a zip (.npz) of .npy arrays, read and written
// with fflate. Arrays: format_version int64 [], labels unicode [C], sums float64 [C, D],
// counts int64 [C], model_fingerprint unicode [], metric unicode [], network_id unicode [].

import { unzipSync, zipSync } from "fflate";

import { StoreError } from "./errors.js";
import { readNpy, writeNpy } from "./npy.js";

export const STORE_FORMAT = 1;
const KEYS = ["format_version", "labels", "sums", "counts", "model_fingerprint", "metric"];
const MAX_STORE_BYTES = 4 * 1024 ** 3;

/**
 * @typedef {{labels: string[], sums: Float64Array[], counts: number[], modelFingerprint: string,
 *   metric: string, networkId: string}} StoreContents  sums: C rows of D float64 each
 */

/** @param {StoreContents} s @returns {Uint8Array} the .npz file */
export function writeStore(s) {
  const dim = s.sums.length ? s.sums[0].length : 0;
  const flat = [];
  for (const row of s.sums) flat.push(...row);
  const files = {
    "format_version.npy": writeNpy("<i8", [], [STORE_FORMAT]),
    "labels.npy": writeNpy("U", [s.labels.length], s.labels),
    "sums.npy": writeNpy("<f8", [s.labels.length, dim], flat),
    "counts.npy": writeNpy("<i8", [s.counts.length], s.counts),
    "model_fingerprint.npy": writeNpy("U", [], [s.modelFingerprint]),
    "metric.npy": writeNpy("U", [], [s.metric]),
    "network_id.npy": writeNpy("U", [], [s.networkId]),
  };
  return zipSync(files, { level: 0 });
}

/**
 * Reads and validates a store as runtime/store.py `read_store` does; every defect is a StoreError.
 * @param {Uint8Array} bytes @param {string} name for messages @param {number} dim embedding size @returns {StoreContents}
 */
export function readStore(bytes, name) {
  if (bytes.length > MAX_STORE_BYTES) throw new StoreError(`store file is too large: ${name}`);
  const arrays = {};
  try {
    const files = unzipSync(bytes, { filter: (f) => f.name.endsWith(".npy") && f.originalSize <= MAX_STORE_BYTES });
    for (const [file, data] of Object.entries(files)) arrays[file.slice(0, -4)] = readNpy(data);
  } catch {
    throw new StoreError(`store is corrupted or not an edgemeta store: ${name}`);
  }
  if ("format_version" in arrays) checkVersion(arrays.format_version, name);
  const missing = KEYS.filter((k) => !(k in arrays));
  if (missing.length) throw new StoreError(`not an edgemeta store (missing ${missing.join(", ")}): ${name}`);
  return validate(arrays, name);
}

function checkVersion(a, name) {
  if (a.shape.length !== 0 || !(a.data instanceof BigInt64Array || a.data instanceof Int32Array)) {
    throw new StoreError(`store has an invalid format_version: ${name}`);
  }
  const v = Number(a.data[0]);
  if (v > STORE_FORMAT) throw new StoreError(`store format ${v} is newer than this edgemeta supports (${STORE_FORMAT}); upgrade edgemeta: ${name}`);
  if (v < 1) throw new StoreError(`store has an invalid format_version ${v}: ${name}`);
}

function validate(a, name) {
  const { labels, sums, counts } = a;
  const scalarText = (x) => x && x.descr.startsWith("<U") && x.shape.length === 0;
  const c = labels.shape[0];
  const ok = labels.descr.startsWith("<U") && labels.shape.length === 1
    && sums.descr === "<f8" && sums.shape.length === 2 && sums.shape[0] === c
    && (counts.data instanceof BigInt64Array || counts.data instanceof Int32Array) && counts.shape.length === 1 && counts.shape[0] === c
    && scalarText(a.model_fingerprint) && scalarText(a.metric) && (a.network_id === undefined || scalarText(a.network_id));
  if (!ok) throw new StoreError(`store is corrupted (inconsistent arrays): ${name}`);
  const labelList = /** @type {string[]} */ (labels.data);
  if (new Set(labelList).size !== labelList.length || labelList.some((x) => !x)) {
    throw new StoreError(`store is corrupted (empty or repeated labels): ${name}`);
  }
  const countList = Array.from(counts.data, Number);
  const dim = sums.shape[1];
  const flat = /** @type {Float64Array} */ (sums.data);
  if (countList.some((n) => n < 1 || n > 2 ** 53) || !flat.every(Number.isFinite)) {
    throw new StoreError(`store is corrupted (bad counts or non-finite sums): ${name}`);
  }
  return {
    labels: labelList,
    sums: labelList.map((_, i) => flat.slice(i * dim, (i + 1) * dim)),
    counts: countList,
    modelFingerprint: a.model_fingerprint.data[0],
    metric: a.metric.data[0],
    networkId: a.network_id ? a.network_id.data[0] : "",
    dim,
  };
}
