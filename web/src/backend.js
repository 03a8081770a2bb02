// Which onnxruntime runs the network: onnxruntime-node in Node, onnxruntime-web in browsers
// (where the page maps the bare name "onnxruntime-web" with an import map, see demo/index.html).

/** True in Node (and Electron's main process), false in browsers and workers. */
export const isNode = typeof process !== "undefined" && !!process.versions?.node;

let ortPromise = null;

/** The onnxruntime module ({InferenceSession, Tensor}), imported once. */
export function loadOrt() {
  ortPromise ??= (isNode ? import("onnxruntime-node") : import("onnxruntime-web")).then((m) => (m.InferenceSession ? m : m.default));
  return ortPromise;
}

/**
 * The bytes of a model or store given as a URL, a file path (Node), an ArrayBuffer or a Uint8Array.
 * @param {string | URL | ArrayBuffer | Uint8Array} source @returns {Promise<{bytes: Uint8Array, name: string}>}
 */
export async function readSource(source) {
  if (source instanceof Uint8Array) return { bytes: source, name: "the given bytes" };
  if (source instanceof ArrayBuffer) return { bytes: new Uint8Array(source), name: "the given bytes" };
  const text = String(source);
  if (isNode && !/^(https?|data|blob):/i.test(text)) {
    const { readFile } = await import("node:fs/promises");
    const { fileURLToPath } = await import("node:url");
    const path = text.startsWith("file:") ? fileURLToPath(text) : text;
    return { bytes: new Uint8Array(await readFile(path)), name: path.split(/[\\/]/).pop() };
  }
  const response = await fetch(text);
  if (!response.ok) throw new Error(`cannot fetch ${text}: HTTP ${response.status}`);
  return { bytes: new Uint8Array(await response.arrayBuffer()), name: text.split("/").pop() || text };
}

/** Hex sha256 of `bytes` (the model fingerprint Python computes). */
export async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
