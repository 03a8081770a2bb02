// The model's edgemeta metadata, checked as runtime/metadata.py checks it (the parts the
// JavaScript runtime uses), and which prototype stores a model may load (runtime/interchange.py).

import { ModelError, StoreError } from "./errors.js";
import { checkSpec } from "./preprocess.js";
import { rejectionRule } from "./rejection.js";

export const METADATA_KEY = "edgemeta";
const CLASSIFIER_KEY = "edgemeta.classifier";
const FORMAT_VERSION = 1;
const METRICS = ["sqeuclidean", "cosine"];
const MAX_METADATA_BYTES = 1_000_000;
export const MIN_STORE_AGREEMENT = 0.995;

/**
 * The edgemeta metadata of a model from its ONNX metadata_props; ModelError for a baked
 * classifier, a file without edgemeta metadata, or metadata this runtime cannot use.
 * @param {Record<string, string>} props @param {string} name for messages @returns {object}
 */
export function parseMetadata(props, name) {
  if (CLASSIFIER_KEY in props || (METADATA_KEY in props && "labels" in props)) {
    throw new ModelError(`${name} is a baked classifier (edgemeta bake), not an embedding model: run it with ` +
      "onnxruntime directly, or pass the embedding model it was baked from");
  }
  if (!(METADATA_KEY in props)) throw new ModelError(`ONNX model has no edgemeta metadata (key '${METADATA_KEY}'): ${name}`);
  const text = props[METADATA_KEY];
  if (text.length > MAX_METADATA_BYTES) throw new ModelError("edgemeta metadata is too large");
  let meta;
  try {
    meta = JSON.parse(text);
  } catch (e) {
    throw new ModelError(`edgemeta metadata is not valid JSON: ${e.message}`);
  }
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) throw new ModelError("edgemeta metadata must be a JSON object");
  checkMetadata(meta);
  return meta;
}

function checkMetadata(meta) {
  const version = meta.format_version;
  if (!Number.isInteger(version)) throw new ModelError("edgemeta metadata has no integer format_version");
  if (version > FORMAT_VERSION) {
    throw new ModelError(`model metadata format ${version} is newer than this edgemeta supports (${FORMAT_VERSION}); upgrade edgemeta`);
  }
  const spec = meta.preprocess;
  if (spec === null || typeof spec !== "object") throw new ModelError("edgemeta metadata has no preprocess section");
  const sizeOk = Array.isArray(spec.size) && spec.size.length === 2 && spec.size.every((v) => Number.isInteger(v) && v >= 1);
  const c = spec.channels;
  const perChannel = (xs) => Array.isArray(xs) && xs.length === c && xs.every(Number.isFinite);
  if (!sizeOk || !perChannel(spec.mean) || !perChannel(spec.std) || !spec.std.every((s) => s > 0)) {
    throw new ModelError("invalid preprocess metadata: size, mean and std must fit the channels");
  }
  if (!["light_on_dark", "dark_on_light", "none"].includes(spec.polarity)) throw new ModelError(`unknown polarity ${JSON.stringify(spec.polarity)}`);
  spec.aspect ??= "stretch"; // files from before the aspect policies, as Python reads them
  checkSpec(spec);
  if (!Number.isInteger(meta.embedding_dim) || meta.embedding_dim < 1) throw new ModelError(`embedding_dim must be positive, got ${meta.embedding_dim}`);
  meta.metric ??= "sqeuclidean";
  if (!METRICS.includes(meta.metric)) throw new ModelError(`unknown metric ${JSON.stringify(meta.metric)}; one of ${METRICS.join(", ")}`);
  const shift = meta.support_shift ?? 0;
  if (!Number.isInteger(shift) || shift < 0 || shift > 3) throw new ModelError(`support shift must be an integer 0..3 (pixels), got ${shift}`);
  const t = meta.threshold;
  if (t !== undefined && t !== null && !(Number.isFinite(t) && t > 0)) throw new ModelError("threshold must be a positive finite number");
  rejectionRule(meta.rejection);
}

/** The network id this model's stores record and accept (Python's `store_network_id`), or null. */
export function storeNetworkId(meta) {
  const net = meta.network || {};
  if (!net.id) return null;
  return net.reference || storeAgreement(meta) >= MIN_STORE_AGREEMENT ? String(net.id) : null;
}

function storeAgreement(meta) {
  const net = meta.network || {};
  return net.reference ? 1.0 : Number((net.agreement || {}).top1 ?? 0.0);
}

/**
 * StoreError unless a store with `fingerprint` and `networkId` may be used with this model
 * (runtime/interchange.py `check_store_fits`, with the same messages).
 */
export function checkStoreFits(store, meta, fingerprint, modelName, storeName) {
  if (store.modelFingerprint === fingerprint || (meta.equivalent_fingerprints || []).includes(store.modelFingerprint)) return;
  const mine = storeNetworkId(meta);
  if (store.networkId && store.networkId === mine) return;
  if (store.networkId && store.networkId === (meta.network || {}).id) {
    throw new StoreError(`store ${storeName} was made with another file of network ${store.networkId.slice(0, 12)}, and ` +
      `${modelName} agrees with that network's reference file in only ${(100 * storeAgreement(meta)).toFixed(2)}% of validation ` +
      `decisions (stores are shared from ${(100 * MIN_STORE_AGREEMENT).toFixed(1)}%): re-enroll the classes with ${modelName}`);
  }
  throw new StoreError(`store ${storeName} was made with another model (fingerprint ${store.modelFingerprint.slice(0, 12)}), not ` +
    `${modelName} (${fingerprint.slice(0, 12)}): re-enroll the classes with ${modelName}, or use the model that made it`);
}
