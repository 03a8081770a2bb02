// FewShotClassifier: class prototypes (mean embeddings) and nearest-prototype prediction, the
// JavaScript side of runtime/classifier.py. State is per-class float64 sums and shot counts.

import { EdgemetaError, StoreError } from "./errors.js";
import { checkStoreFits, storeNetworkId } from "./metadata.js";
import { accepts, operatingPoint, rejectionRule } from "./rejection.js";
import { readStore, writeStore } from "./store.js";

const MAX_LABEL_LENGTH = 256;

/** The label if it is valid (runtime/store.py `check_label`), else EdgemetaError. */
export function checkLabel(label) {
  if (typeof label !== "string") throw new EdgemetaError(`a label must be a string, got ${typeof label}`);
  if (!label.trim()) throw new EdgemetaError("a label must not be empty");
  if ([...label].length > MAX_LABEL_LENGTH) throw new EdgemetaError(`a label must be at most ${MAX_LABEL_LENGTH} characters`);
  if (label.includes("\0")) throw new EdgemetaError("a label must not contain NUL characters");
  const bad = /[\p{Cc}\u2028\u2029]|\p{Cs}/u.exec(label);
  if (bad) throw new EdgemetaError(`a label must be printable text on one line: character ${[...label.slice(0, bad.index)].length + 1} is not`);
  return label;
}

export class FewShotClassifier {
  /**
   * @param {import("./model.js").EmbeddingModel} model
   * @param {{reject?: "strict" | "balanced" | "off", far?: number, supportShift?: number, queryViews?: 1 | 3 | 5 | 9}} [options]
   */
  constructor(model, options = {}) {
    this.model = model;
    this.options = { ...options };
    this.rule = rejectionRule(model.metadata.rejection);
    this.operatingPoint(); // a bad choice fails here, not at the first classify
    this.supportShift = options.supportShift ?? model.metadata.support_shift ?? 0;
    this.queryViews = options.queryViews ?? 1;
    /** @type {Map<string, {sum: Float64Array, count: number}>} */
    this.classes = new Map();
    this.cache = null;
  }

  /** The enrolled labels, in enrollment order. @returns {string[]} */
  get labels() {
    return [...this.classes.keys()];
  }

  /** Shots per label (Python's `counts()`). @returns {Record<string, number>} */
  counts() {
    return Object.fromEntries([...this.classes].map(([label, { count }]) => [label, count]));
  }

  /** The rejection operating point: the call's `reject`/`far` when given, else the classifier's. */
  operatingPoint(choice = {}) {
    const given = choice.reject !== undefined || choice.far !== undefined;
    return operatingPoint(this.rule, this.model.metadata.threshold ?? null, given ? choice : this.options);
  }

  /** Add the images as examples of `label`; resolves to the class's number of shots. */
  async enroll(label, images) {
    checkLabel(label);
    const emb = this.unit(await this.model.embedSupport(images, this.supportShift));
    if (!emb.every(Number.isFinite)) throw new EdgemetaError("the model produced non-finite embeddings for these images");
    const d = this.model.dim;
    const n = emb.length / d;
    const total = new Float64Array(d);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) total[j] += emb[i * d + j];
    return this.addEmbeddings(label, total, n);
  }

  /** Add `count` shots whose embeddings sum to `total` (float64 [D]). */
  addEmbeddings(label, total, count) {
    checkLabel(label);
    const entry = this.classes.get(label) ?? { sum: new Float64Array(this.model.dim), count: 0 };
    for (let j = 0; j < entry.sum.length; j++) entry.sum[j] += total[j];
    entry.count += count;
    this.classes.set(label, entry);
    this.cache = null;
    return entry.count;
  }

  /** Forget a class; an unknown label is an error. */
  remove(label) {
    if (!this.classes.delete(label)) throw new EdgemetaError(`no class named ${JSON.stringify(label)}`);
    this.cache = null;
  }

  /** Cosine models compare unit vectors. @param {Float32Array} emb [N * D] */
  unit(emb) {
    if (this.model.metadata.metric !== "cosine") return emb;
    const d = this.model.dim;
    const out = new Float32Array(emb.length);
    for (let i = 0; i < emb.length; i += d) {
      let sq = 0;
      for (let j = 0; j < d; j++) sq += emb[i + j] * emb[i + j];
      const norm = Math.max(Math.fround(Math.sqrt(sq)), 1e-12);
      for (let j = 0; j < d; j++) out[i + j] = emb[i + j] / norm;
    }
    return out;
  }

  /** Labels, float32 prototypes (as float64 values) and their squared lengths, rebuilt after changes. */
  prototypes() {
    if (this.cache) return this.cache;
    const labels = this.labels;
    const protos = labels.map((lab) => {
      const { sum, count } = this.classes.get(lab);
      return Float64Array.from(Float32Array.from(sum, (v) => v / count));
    });
    const sqNorms = protos.map((p) => p.reduce((a, v) => a + v * v, 0));
    this.cache = { labels, protos, sqNorms, counts: labels.map((lab) => this.classes.get(lab).count) };
    return this.cache;
  }

  /**
   * Per image, the `topK` nearest classes, best first: {label, score, distance}; score is the
   * softmax over negative squared distances, distance the squared distance.
   */
  async predict(images, { topK = 1 } = {}) {
    if (!Number.isInteger(topK) || topK < 1) throw new EdgemetaError(`topK must be a positive integer, got ${topK}`);
    const { labels, protos, sqNorms } = this.prototypes();
    if (labels.length === 0) throw new EdgemetaError("the classifier has no classes enrolled");
    const emb = this.unit(await this.model.embedQuery(images, this.queryViews));
    const d = this.model.dim;
    const out = [];
    for (let i = 0; i < emb.length / d; i++) {
      const q = emb.subarray(i * d, (i + 1) * d);
      let qq = 0;
      for (let j = 0; j < d; j++) qq += q[j] * q[j];
      // ||p||^2 - 2 q.p, then + ||q||^2: the same float64 arithmetic as Python.
      const partial = protos.map((p, c) => {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += q[j] * p[j];
        return -2 * dot + sqNorms[c];
      });
      const order = partial.map((_, c) => c).sort((a, b) => partial[a] - partial[b] || a - b).slice(0, topK);
      const nearest = partial[order[0]];
      const total = partial.reduce((a, x) => a + Math.exp(nearest - x), 0);
      out.push(order.map((c) => ({ label: labels[c], score: Math.exp(nearest - partial[c]) / total, distance: Math.max(partial[c] + qq, 0) })));
    }
    return out;
  }

  /** Whether the rejection rule (the call's `reject`/`far`, else the classifier's) accepts each prediction list's first entry. */
  accepts(predictions, choice = {}) {
    const op = this.operatingPoint(choice);
    const { labels, sqNorms, counts } = this.prototypes();
    return predictions.map((p) => {
      const c = labels.indexOf(p[0].label);
      return accepts(op, p[0].distance, c >= 0 ? counts[c] : 1, labels.length, c >= 0 ? sqNorms[c] : 0);
    });
  }

  /** Top-1 label per image, or null when the rejection rule calls it unknown. */
  async classify(images, choice = {}) {
    this.operatingPoint(choice); // a bad choice fails before any embedding
    const preds = await this.predict(images);
    const ok = this.accepts(preds, choice);
    return preds.map((p, i) => (ok[i] ? p[0].label : null));
  }

  /** The store file (the .npz Python writes and reads). @returns {Uint8Array} */
  save() {
    const labels = this.labels;
    return writeStore({
      labels, sums: labels.map((l) => this.classes.get(l).sum), counts: labels.map((l) => this.classes.get(l).count),
      modelFingerprint: this.model.fingerprint, metric: this.model.metadata.metric, networkId: storeNetworkId(this.model.metadata) ?? "",
    });
  }

  /**
   * A classifier from a store file written by Python or by `save()`; StoreError for a store of another model.
   * @param {Uint8Array | ArrayBuffer} bytes @param {import("./model.js").EmbeddingModel} model
   */
  static load(bytes, model, options = {}) {
    const name = options.name ?? "(given bytes)";
    const store = readStore(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), name);
    checkStoreFits(store, model.metadata, model.fingerprint, model.name, name);
    if (store.dim !== model.dim) throw new StoreError(`store ${name} holds ${store.dim}-d prototypes, the model makes ${model.dim}-d`);
    const clf = new FewShotClassifier(model, options);
    store.labels.forEach((label, i) => {
      try {
        checkLabel(label);
      } catch (e) {
        throw new StoreError(`store ${name} holds an invalid label (${e.message}); edgemeta remove drops it`);
      }
      clf.addEmbeddings(label, store.sums[i], store.counts[i]);
    });
    return clf;
  }
}
