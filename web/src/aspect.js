// The aspect policies (Python's runtime/aspect.py): how an image whose aspect ratio differs from the
// model's is fitted to it, bit-exact with Python: "stretch" (resize; files without the field),
// "center_crop" (the largest centered crop of the model's aspect), "letterbox" (scale to fit, pad).

/** How an image of another aspect ratio is fitted to the model's size (Python's `ASPECTS`); absent: "stretch". */
export const ASPECTS = ["stretch", "center_crop", "letterbox"];

/** Python's `crop_box`: [left, top, right, bottom] of the largest centered crop with the aspect of `size` [h, w]. */
export function cropBox(w, h, size) {
  const [th, tw] = size;
  let cw = w, ch = h;
  if (w * th > h * tw) cw = Math.min(w, Math.max(1, Math.floor((2 * h * tw + th) / (2 * th))));
  else ch = Math.min(h, Math.max(1, Math.floor((2 * w * th + tw) / (2 * tw))));
  const left = Math.floor((w - cw) / 2), top = Math.floor((h - ch) / 2);
  return [left, top, left + cw, top + ch];
}

/** Python's `fit_size`: [width, height] of a w x h image scaled to fit inside `size` [h, w], aspect kept. */
export function fitSize(w, h, size) {
  const [th, tw] = size;
  if (w * th > h * tw) return [tw, Math.min(th, Math.max(1, Math.floor((2 * h * tw + w) / (2 * w))))];
  return [Math.min(tw, Math.max(1, Math.floor((2 * w * th + h) / (2 * h)))), th];
}

/** The box [left, top, right, bottom) of `src` (uint8 [h, w, c] with width `w`). @returns {Uint8Array} */
export function crop(src, w, c, left, top, right, bottom) {
  const rowLen = (right - left) * c;
  const out = new Uint8Array(rowLen * (bottom - top));
  for (let y = top; y < bottom; y++) out.set(src.subarray((y * w + left) * c, (y * w + left) * c + rowLen), (y - top) * rowLen);
  return out;
}

/**
 * Python's `letterbox`: `fitted` (uint8 [h, w, c]) centered in `size`, on the per-channel mean of its
 * one-pixel border rounded half up. @returns {Uint8Array} [size[0], size[1], c]
 */
export function letterbox(fitted, w, h, c, size) {
  const [th, tw] = size;
  const sums = new Array(c).fill(0);
  let n = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (y !== 0 && y !== h - 1 && x !== 0 && x !== w - 1) continue;
      for (let ch = 0; ch < c; ch++) sums[ch] += fitted[(y * w + x) * c + ch];
      n++;
    }
  }
  const out = new Uint8Array(th * tw * c);
  for (let i = 0; i < th * tw; i++) for (let ch = 0; ch < c; ch++) out[i * c + ch] = Math.floor((2 * sums[ch] + n) / (2 * n));
  const top = Math.floor((th - h) / 2), left = Math.floor((tw - w) / 2);
  for (let y = 0; y < h; y++) out.set(fitted.subarray(y * w * c, (y + 1) * w * c), ((top + y) * tw + left) * c);
  return out;
}
