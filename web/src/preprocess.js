// The JavaScript copy of the Python runtime's preprocessing (runtime/images.py, runtime/preprocess.py),
// bit-exact on decoded pixels: alpha onto white, Pillow's RGB->L, the aspect policy (aspect.js),
// Pillow's resampling, the border polarity fix and (x / 255 - mean) / std in float32. Kept in these
// two modules so that it can be replaced whole (e.g. by a preprocessing graph inside the model file).
// EXIF orientation and JPEG decoding are the browser's (see README.md).

import { ASPECTS, crop, cropBox, fitSize, letterbox } from "./aspect.js";
import { ImageError, ModelError } from "./errors.js";

/** Below this on a side an image is refused unless it is already at the model's size (images.py). */
export const MIN_IMAGE_SIDE = 8;
export const MAX_IMAGE_PIXELS = 64_000_000;

/**
 * @typedef {{data: Uint8Array | Uint8ClampedArray, width: number, height: number, channels: 1 | 3 | 4}} Pixels
 * @typedef {{size: number[], channels: number, resize: string, polarity: string,
 *   auto_polarity?: boolean, mean: number[], std: number[], aspect?: string}} PreprocessSpec
 */

const F054 = Math.fround(0.54);
const F046 = Math.fround(0.46);

// Pillow's resampling filters (libImaging/Resample.c): [support, kernel].
const FILTERS = {
  box: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0)],
  bilinear: [1.0, (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; }],
  hamming: [1.0, (x) => {
    x = Math.abs(x);
    if (x === 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= Math.PI;
    // Pillow's constants are C floats (0.54f, 0.46f).
    return (Math.sin(x) / x) * (F054 + F046 * Math.cos(x));
  }],
  bicubic: [2.0, (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  }],
  lanczos: [3.0, (x) => {
    const sinc = (v) => { if (v === 0.0) return 1.0; v *= Math.PI; return Math.sin(v) / v; };
    return x > -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
  }],
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

/** Check that this module can prepare images for `spec`; ModelError otherwise. @param {PreprocessSpec} spec */
export function checkSpec(spec) {
  if (!(spec.resize in FILTERS)) {
    throw new ModelError(`resize method ${JSON.stringify(spec.resize)} is not supported by the JavaScript runtime ` +
      `(supported: ${Object.keys(FILTERS).join(", ")})`);
  }
  if (spec.channels !== 1 && spec.channels !== 3) throw new ModelError(`preprocess channels must be 1 or 3, got ${spec.channels}`);
  if (!ASPECTS.includes(spec.aspect ?? "stretch")) {
    throw new ModelError(`unknown aspect policy ${JSON.stringify(spec.aspect)}; one of ${ASPECTS.join(", ")}`);
  }
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis.
 * @returns {{bounds: Int32Array, kk: Int32Array, ksize: number}} bounds [out*2] (first input index,
 *   count); kk [out*ksize] fixed-point weights.
 */
function coefficients(inSize, outSize, filter) {
  const [support0, kernel] = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) { w[x] = kernel((x + xmin - center + 0.5) * ss); ww += w[x]; }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

function clip8(v) {
  if (v >= ONE * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / ONE);
}

/**
 * Pillow's Image.resize for 8-bit images: two one-axis passes, uint8 in between. Pillow 13 runs the
 * vertical pass first when the height shrinks by more than twice the width's pixels (python-pillow
 * PR 9549; earlier Pillow always went horizontal first): the order changes rounding, so it is mirrored.
 * @param {Uint8Array} src [h, w, c] row-major @returns {Uint8Array} [outH, outW, c]
 */
export function resize(src, w, h, c, outW, outH, filter) {
  if (h > outH && h - outH > 2 * (w - outW)) {
    return resizeAxis(resizeAxis(src, w, h, c, outH, filter, false), w, outH, c, outW, filter, true);
  }
  return resizeAxis(resizeAxis(src, w, h, c, outW, filter, true), outW, h, c, outH, filter, false);
}

/** One pass of Pillow's ImagingResample{Horizontal,Vertical}_8bpc: `src` [h, w, c] to `out` pixels on one axis. */
function resizeAxis(src, w, h, c, out, filter, horizontal) {
  const inSize = horizontal ? w : h;
  if (out === inSize) return src;
  const { bounds, kk, ksize } = coefficients(inSize, out, filter);
  const [ow, oh] = horizontal ? [out, h] : [w, out];
  const dst = new Uint8Array(ow * oh * c);
  // Step between neighbouring taps along the axis, in array elements.
  const step = horizontal ? c : w * c;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const first = bounds[o * 2], n = bounds[o * 2 + 1], k = o * ksize;
      const base = horizontal ? (y * w + first) * c : (first * w + x) * c;
      for (let ch = 0; ch < c; ch++) {
        let ss = ONE / 2;
        for (let t = 0; t < n; t++) ss += src[base + t * step + ch] * kk[k + t];
        dst[(y * ow + x) * c + ch] = clip8(ss);
      }
    }
  }
  return dst;
}

/** Pillow's alpha_composite of an RGBA pixel onto opaque white: one channel value. */
function overWhite(v, a) {
  if (a === 0) return 255;
  // AlphaComposite.c with dst alpha 255: coef1 = a * 128, coef2 = (255 - a) * 128 (PRECISION_BITS 7).
  const tmp = v * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
  return Math.floor((Math.floor(tmp / 256) + tmp) / 256) >> 7;
}

/** Pillow's convert("L") of one RGB pixel (runtime/images.py `_rgb_to_gray`). */
function gray(r, g, b) {
  return Math.floor((r * 19595 + g * 38470 + b * 7471 + 0x8000) / 65536);
}

/**
 * Pixels in any of 1, 3, 4 channels -> uint8 [H, W, `channels`] (alpha composited onto white).
 * @param {Pixels} px @param {number} channels 1 or 3 @returns {Uint8Array}
 */
export function toChannels(px, channels) {
  const { data, width, height } = px;
  const n = width * height;
  const c = px.channels;
  if (c === channels) return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    let r, g, b;
    if (c === 1) { r = g = b = data[i]; } else {
      r = data[i * c]; g = data[i * c + 1]; b = data[i * c + 2];
      if (c === 4) { const a = data[i * 4 + 3]; r = overWhite(r, a); g = overWhite(g, a); b = overWhite(b, a); }
    }
    if (channels === 1) out[i] = c === 1 ? r : gray(r, g, b);
    else { out[i * 3] = r; out[i * 3 + 1] = g; out[i * 3 + 2] = b; }
  }
  return out;
}

/** ImageError unless `px` is a well-formed image. @param {Pixels} px */
export function checkPixels(px) {
  if (px === null || typeof px !== "object" || !(px.data instanceof Uint8Array || px.data instanceof Uint8ClampedArray)) {
    throw new ImageError("an image must be {data: Uint8Array | Uint8ClampedArray, width, height, channels: 1 | 3 | 4}");
  }
  const { width, height, channels } = px;
  if (![1, 3, 4].includes(channels)) throw new ImageError(`image channels must be 1, 3 or 4, got ${channels}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageError(`image width and height must be positive integers, got ${width}x${height}`);
  }
  if (width * height > MAX_IMAGE_PIXELS) throw new ImageError(`image of ${width}x${height} pixels is over the limit of ${MAX_IMAGE_PIXELS}`);
  if (px.data.length !== width * height * channels) {
    throw new ImageError(`image data holds ${px.data.length} values, expected ${width}x${height}x${channels} = ${width * height * channels}`);
  }
}

/**
 * One image -> uint8 [H, W, C] at the model's size and polarity: Python's `prepare_uint8`.
 * @param {Pixels} px @param {PreprocessSpec} spec @returns {Uint8Array}
 */
export function prepare(px, spec) {
  checkPixels(px);
  const [h, w] = spec.size;
  const c = spec.channels;
  if ((px.width !== w || px.height !== h) && Math.min(px.width, px.height) < MIN_IMAGE_SIDE) {
    throw new ImageError(`image is ${px.width}x${px.height} pixels, under the minimum of ${MIN_IMAGE_SIDE} on a side`);
  }
  let src = toChannels(px, c);
  let [sw, sh] = [px.width, px.height];
  const aspect = spec.aspect ?? "stretch";
  if (aspect === "center_crop") {
    const [left, top, right, bottom] = cropBox(sw, sh, spec.size);
    src = crop(src, sw, c, left, top, right, bottom);
    [sw, sh] = [right - left, bottom - top];
  }
  let img;
  if (aspect === "letterbox") {
    const [nw, nh] = fitSize(sw, sh, spec.size);
    img = letterbox(resize(src, sw, sh, c, nw, nh, spec.resize), nw, nh, c, spec.size);
  } else {
    img = resize(src, sw, sh, c, w, h, spec.resize);
  }
  return fixPolarity(img === px.data ? img.slice() : img, h, w, c, spec);
}

/** Invert `img` (uint8 [h, w, c], in place) when its border says the background is the wrong way. */
function fixPolarity(img, h, w, c, spec) {
  if (spec.polarity === "none" || spec.auto_polarity === false) return img;
  let sum = 0;
  let count = 0;
  for (let y = 0; y < h; y++) {
    const edgeRow = y === 0 || y === h - 1;
    for (let x = 0; x < w; x++) {
      if (!edgeRow && x !== 0 && x !== w - 1) continue;
      for (let ch = 0; ch < c; ch++) sum += img[(y * w + x) * c + ch];
      count += c;
    }
  }
  const brightBackground = sum > 127.5 * count;
  if (brightBackground === (spec.polarity === "light_on_dark")) {
    for (let i = 0; i < img.length; i++) img[i] = 255 - img[i];
  }
  return img;
}

/**
 * Prepared uint8 [N, H, W, C] images -> float32 [N, C, H, W] model input, as Python's `normalize`:
 * x * float32(1 / (255 std)) + float32(-mean / std), each step rounded to float32.
 * @param {Uint8Array[]} images each [H, W, C] @param {PreprocessSpec} spec @returns {Float32Array}
 */
export function normalize(images, spec) {
  const [h, w] = spec.size;
  const c = spec.channels;
  const plane = h * w;
  const out = new Float32Array(images.length * c * plane);
  for (let ch = 0; ch < c; ch++) {
    const scale = Math.fround(1.0 / (255.0 * spec.std[ch]));
    const offset = Math.fround(-spec.mean[ch] / spec.std[ch]);
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = Math.fround(Math.fround(v * scale) + offset);
    for (let n = 0; n < images.length; n++) {
      const img = images[n];
      const base = (n * c + ch) * plane;
      if (c === 1) for (let i = 0; i < plane; i++) out[base + i] = table[img[i]];
      else for (let i = 0; i < plane; i++) out[base + i] = table[img[i * c + ch]];
    }
  }
  return out;
}

/** The (dy, dx) support offsets of Python's `shift_offsets`: a (2r+1)^2 grid, (0, 0) first. */
export function shiftOffsets(radius) {
  const grid = [];
  for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) grid.push([dy, dx]);
  return [[0, 0], ...grid.filter(([dy, dx]) => dy !== 0 || dx !== 0)];
}

/** Query test-time views (Python's `QUERY_VIEW_OFFSETS`). */
export const QUERY_VIEW_OFFSETS = {
  1: [[0, 0]],
  3: [[0, 0], [-1, 1], [1, -1]],
  5: [[0, 0], [-1, -1], [-1, 1], [1, -1], [1, 1]],
  9: shiftOffsets(1),
};

/**
 * `img` (uint8 [h, w, c]) moved by (dy, dx), edges repeated (Python's `offset_views`).
 * @returns {Uint8Array} [h, w, c]
 */
export function shifted(img, h, w, c, dy, dx) {
  if (dy === 0 && dx === 0) return img;
  const out = new Uint8Array(img.length);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(Math.max(y - dy, 0), h - 1);
    for (let x = 0; x < w; x++) {
      const sx = Math.min(Math.max(x - dx, 0), w - 1);
      for (let ch = 0; ch < c; ch++) out[(y * w + x) * c + ch] = img[(sy * w + sx) * c + ch];
    }
  }
  return out;
}
