// Type declarations of the edgemeta JavaScript runtime (src/index.js).

/** Decoded pixels, row-major, 8 bits per channel. */
export interface Pixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/** One image: pixels anywhere; ImageData, a canvas, an ImageBitmap or an <img> in browsers. */
export type ImageInput = Pixels | ImageData | HTMLCanvasElement | OffscreenCanvas | ImageBitmap | HTMLImageElement;
export type Images = ImageInput | ImageInput[];

export interface Prediction {
  label: string;
  /** softmax over negative squared distances to all prototypes */
  score: number;
  /** squared distance to the class prototype */
  distance: number;
}

export type Reject = "strict" | "balanced" | "off";

export interface RejectChoice {
  reject?: Reject;
  /** a target false-accept rate in the model's calibrated range */
  far?: number;
}

export interface ClassifierOptions extends RejectChoice {
  /** enrolled images are embedded as the mean over shifts by up to this many pixels (default: the model's) */
  supportShift?: 0 | 1 | 2 | 3;
  /** queries are embedded as the mean over this many shifted copies (default 1) */
  queryViews?: 1 | 3 | 5 | 9;
}

export class EdgemetaError extends Error {}
export class ModelError extends EdgemetaError {}
export class StoreError extends EdgemetaError {}
export class ImageError extends EdgemetaError {}

export class EmbeddingModel {
  /** source: URL string, file path (Node), ArrayBuffer or Uint8Array of the .onnx file */
  static create(source: string | URL | ArrayBuffer | Uint8Array, options?: { sessionOptions?: object }): Promise<EmbeddingModel>;
  /** the model's edgemeta metadata: the same object Python's `model.metadata` gives */
  readonly metadata: Record<string, any>;
  /** sha256 (hex) of the model file */
  readonly fingerprint: string;
  readonly name: string;
  /** the embedding size D */
  readonly dim: number;
  /** images -> uint8 [H, W, C] each at the model's size and polarity */
  prepare(images: Images): Uint8Array[];
  /** images -> N * D float32 values, row-major */
  embed(images: Images): Promise<Float32Array>;
  embedSupport(images: Images, shift?: number): Promise<Float32Array>;
  embedQuery(images: Images, views?: 1 | 3 | 5 | 9): Promise<Float32Array>;
}

export class FewShotClassifier {
  constructor(model: EmbeddingModel, options?: ClassifierOptions);
  readonly model: EmbeddingModel;
  readonly labels: string[];
  /** shots per label */
  counts(): Record<string, number>;
  /** adds the images as shots of `label`; resolves to the class's number of shots */
  enroll(label: string, images: Images): Promise<number>;
  remove(label: string): void;
  predict(images: Images, options?: { topK?: number }): Promise<Prediction[][]>;
  /** top-1 label per image, null when rejected as unknown */
  classify(images: Images, choice?: RejectChoice): Promise<(string | null)[]>;
  accepts(predictions: Prediction[][], choice?: RejectChoice): boolean[];
  /** the store file (.npz), readable by Python's FewShotClassifier.load */
  save(): Uint8Array;
  /** reads stores written by save() or by Python; StoreError for another model's store */
  static load(bytes: Uint8Array | ArrayBuffer, model: EmbeddingModel, options?: ClassifierOptions & { name?: string }): FewShotClassifier;
}

/** decoded pixels -> uint8 [H, W, C] at the model's size and polarity, bit-exact with Python's prepare */
export function prepare(pixels: Pixels, spec: Record<string, any>): Uint8Array;
