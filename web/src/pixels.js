// Every accepted image form -> {data, width, height, channels}: plain pixel objects anywhere;
// ImageData, canvases, ImageBitmaps and <img> elements in browsers (drawn onto a canvas to read them).

import { ImageError } from "./errors.js";

/**
 * @param {any} image @returns {import("./preprocess.js").Pixels}
 */
export function toPixels(image) {
  if (image && (image.data instanceof Uint8Array || image.data instanceof Uint8ClampedArray)) {
    // ImageData has no channels field: it is always RGBA.
    return { data: image.data, width: image.width, height: image.height, channels: image.channels ?? 4 };
  }
  const g = globalThis;
  const drawable = (g.HTMLCanvasElement && image instanceof g.HTMLCanvasElement)
    || (g.OffscreenCanvas && image instanceof g.OffscreenCanvas)
    || (g.ImageBitmap && image instanceof g.ImageBitmap)
    || (g.HTMLImageElement && image instanceof g.HTMLImageElement);
  if (!drawable) {
    throw new ImageError("an image must be ImageData, a canvas, an ImageBitmap, an HTMLImageElement or " +
      "{data: Uint8Array | Uint8ClampedArray, width, height, channels: 1 | 3 | 4}");
  }
  const width = image.naturalWidth || image.width;
  const height = image.naturalHeight || image.height;
  if (!width || !height) throw new ImageError("the image has no pixels (not loaded yet?)");
  const canvas = g.OffscreenCanvas ? new g.OffscreenCanvas(width, height) : Object.assign(g.document.createElement("canvas"), { width, height });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0);
  const data = ctx.getImageData(0, 0, width, height);
  return { data: data.data, width, height, channels: 4 };
}

/** One image or an array of them -> an array of pixel objects (at least one). */
export function toPixelList(images) {
  const list = Array.isArray(images) ? images : [images];
  if (list.length === 0) throw new ImageError("no images given");
  return list.map(toPixels);
}
