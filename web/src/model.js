// EmbeddingModel: an ONNX embedding network plus the metadata that says how to feed it
// (the JavaScript side of runtime/model.py).

import { loadOrt, readSource, sha256Hex } from "./backend.js";
import { EdgemetaError, ModelError } from "./errors.js";
import { parseMetadata } from "./metadata.js";
import { readOnnxMetadata } from "./onnxmeta.js";
import { toPixelList } from "./pixels.js";
import { QUERY_VIEW_OFFSETS, normalize, prepare, shiftOffsets, shifted } from "./preprocess.js";

const MAX_MODEL_BYTES = 512 * 1024 * 1024;
const CHUNK = 256; // images per network call

export class EmbeddingModel {
  /** @private */
  constructor(session, ort, meta, fingerprint, name) {
    this.session = session;
    this.ort = ort;
    /** Everything the model file carries: the same object Python's `model.metadata` gives. */
    this.metadata = meta;
    /** sha256 (hex) of the model file. */
    this.fingerprint = fingerprint;
    /** The file name (or URL) it was loaded from, for messages. */
    this.name = name;
  }

  /**
   * Load a model from a URL, a file path (Node), an ArrayBuffer or a Uint8Array.
   * @param {string | URL | ArrayBuffer | Uint8Array} source
   * @param {{sessionOptions?: object}} [options] passed to onnxruntime's InferenceSession.create
   */
  static async create(source, options = {}) {
    let bytes, name;
    try {
      ({ bytes, name } = await readSource(source));
    } catch (e) {
      throw new ModelError(e.code === "ENOENT" ? `model not found: ${source}` : `cannot read model ${source}: ${e.message}`);
    }
    if (bytes.length === 0) throw new ModelError(`model file is empty: ${name}`);
    if (bytes.length > MAX_MODEL_BYTES) throw new ModelError(`model file is ${bytes.length} bytes, over the limit of ${MAX_MODEL_BYTES}: ${name}`);
    const meta = parseMetadata(readOnnxMetadata(bytes), name);
    const ort = await loadOrt();
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, options.sessionOptions ?? {});
    } catch (e) {
      throw new ModelError(`not a valid ONNX model: ${name} (${String(e.message).split("\n")[0].slice(0, 200)})`);
    }
    const input = meta.input_name ?? "images";
    const output = meta.output_name ?? "embeddings";
    if (session.inputNames.length !== 1 || session.inputNames[0] !== input) {
      throw new ModelError(`model must have one input named '${input}', has ${JSON.stringify(session.inputNames)}`);
    }
    if (!session.outputNames.includes(output)) throw new ModelError(`model must have an output named '${output}'`);
    return new EmbeddingModel(session, ort, meta, await sha256Hex(bytes), name);
  }

  /** The embedding size D. */
  get dim() {
    return this.metadata.embedding_dim;
  }

  /**
   * Images -> uint8 [H, W, C] each, at the model's size and polarity (Python's `prepare`).
   * @returns {Uint8Array[]}
   */
  prepare(images) {
    return toPixelList(images).map((px) => prepare(px, this.metadata.preprocess));
  }

  /** Images -> Float32Array [N * D] embeddings (row-major). */
  async embed(images) {
    return this.embedPrepared(this.prepare(images));
  }

  /** Prepared uint8 [H, W, C] images -> Float32Array [N * D]. */
  async embedPrepared(prepared) {
    const [h, w] = this.metadata.preprocess.size;
    const c = this.metadata.preprocess.channels;
    const d = this.dim;
    const out = new Float32Array(prepared.length * d);
    for (let start = 0; start < prepared.length; start += CHUNK) {
      const part = prepared.slice(start, start + CHUNK);
      const tensor = new this.ort.Tensor("float32", normalize(part, this.metadata.preprocess), [part.length, c, h, w]);
      const result = await this.session.run({ [this.metadata.input_name ?? "images"]: tensor });
      const emb = result[this.metadata.output_name ?? "embeddings"];
      if (emb.dims.length !== 2 || emb.dims[0] !== part.length || emb.dims[1] !== d) {
        throw new ModelError(`model returned shape [${emb.dims}], expected [${part.length}, ${d}]`);
      }
      out.set(emb.data, start * d);
    }
    return out;
  }

  /**
   * Prepared images -> Float32Array [N * D]: each the mean embedding over its copies moved by
   * `offsets` ([dy, dx] pairs), summed in float32 in view order as numpy's mean does.
   */
  async embedViews(prepared, offsets) {
    if (offsets.length === 1 && offsets[0][0] === 0 && offsets[0][1] === 0) return this.embedPrepared(prepared);
    const [h, w] = this.metadata.preprocess.size;
    const c = this.metadata.preprocess.channels;
    const d = this.dim;
    const views = [];
    for (const [dy, dx] of offsets) for (const img of prepared) views.push(shifted(img, h, w, c, dy, dx));
    const emb = await this.embedPrepared(views);
    const n = prepared.length;
    const out = new Float32Array(n * d);
    for (let v = 0; v < offsets.length; v++) {
      for (let i = 0; i < n * d; i++) out[i] = v === 0 ? emb[i] : out[i] + emb[v * n * d + i];
    }
    for (let i = 0; i < n * d; i++) out[i] = out[i] / offsets.length;
    return out;
  }

  /** Images to enroll -> Float32Array [N * D]: the mean over shifts by up to `shift` pixels (default: the model's). */
  async embedSupport(images, shift = this.metadata.support_shift ?? 0) {
    if (!Number.isInteger(shift) || shift < 0 || shift > 3) throw new EdgemetaError(`support shift must be an integer 0..3 (pixels), got ${shift}`);
    return this.embedViews(this.prepare(images), shiftOffsets(shift));
  }

  /** Query images -> Float32Array [N * D]: the mean over `views` (1, 3, 5 or 9) shifted copies. */
  async embedQuery(images, views = 1) {
    const offsets = QUERY_VIEW_OFFSETS[views];
    if (!offsets) throw new EdgemetaError(`query views must be one of 1, 3, 5, 9, got ${views}`);
    return this.embedViews(this.prepare(images), offsets);
  }
}
