// User errors, mirroring runtime/errors.py: every refusal is one of these, with a one-line message.

/** Base class of every error edgemeta raises for bad input, models or stores. */
export class EdgemetaError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** The model file is not a usable edgemeta embedding model. */
export class ModelError extends EdgemetaError {}

/** The prototype store is unreadable, damaged or made by another model. */
export class StoreError extends EdgemetaError {}

/** An input image cannot be used. */
export class ImageError extends EdgemetaError {}
