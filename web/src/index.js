// edgemeta in JavaScript: the same model file, prototype store and answers as the Python runtime.
export { EmbeddingModel } from "./model.js";
export { FewShotClassifier } from "./classifier.js";
export { EdgemetaError, ImageError, ModelError, StoreError } from "./errors.js";
export { prepare } from "./preprocess.js";
