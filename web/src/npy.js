// The .npy format (numpy's NEP 1) for the few array kinds a prototype store holds: little-endian
// int64/int32/float64/float32 and unicode strings ('<U', UTF-32LE, NUL-padded), C order.

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

/**
 * @typedef {{descr: string, shape: number[], data: Float64Array | Float32Array | BigInt64Array | Int32Array | string[]}} NpyArray
 */

/** Parses one .npy file; throws Error (the store reader turns it into a StoreError). @param {Uint8Array} bytes @returns {NpyArray} */
export function readNpy(bytes) {
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) throw new Error("not a .npy file");
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [headerLen, start] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  if (start + headerLen > bytes.length) throw new Error("truncated .npy header");
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error("bad .npy header");
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s).map(Number);
  if (!shape.every((n) => Number.isInteger(n) && n >= 0)) throw new Error("bad .npy shape");
  const count = shape.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(start + headerLen);
  const width = descr.startsWith("<U") ? 4 * Number(descr.slice(2)) : { "<i8": 8, "<f8": 8, "<i4": 4, "<f4": 4 }[descr];
  if (!width || count * width > body.length) throw new Error(`unsupported or truncated array (${descr})`);
  if (fortran === "True" && shape.length > 1) throw new Error("Fortran-order arrays are not supported");
  const copy = body.slice(0, count * width); // aligned, owned
  if (descr.startsWith("<U")) return { descr, shape, data: decodeStrings(copy, count, width) };
  const Kind = { "<i8": BigInt64Array, "<f8": Float64Array, "<i4": Int32Array, "<f4": Float32Array }[descr];
  return { descr, shape, data: new Kind(copy.buffer, 0, count) };
}

function decodeStrings(bytes, count, width) {
  const view = new DataView(bytes.buffer);
  const out = [];
  for (let i = 0; i < count; i++) {
    let s = "";
    for (let j = 0; j < width / 4; j++) {
      const cp = view.getUint32(i * width + j * 4, true);
      if (cp === 0) break; // numpy drops trailing NULs
      s += String.fromCodePoint(cp);
    }
    out.push(s);
  }
  return out;
}

/** One .npy file (format 1.0). `data`: numbers for '<f8', BigInts or numbers for '<i8', strings for 'U'. */
export function writeNpy(descr, shape, data) {
  let body;
  if (descr === "U") {
    const strings = /** @type {string[]} */ (data);
    const chars = Math.max(1, ...strings.map((s) => [...s].length));
    descr = `<U${chars}`;
    body = new Uint8Array(strings.length * chars * 4);
    const view = new DataView(body.buffer);
    strings.forEach((s, i) => [...s].forEach((ch, j) => view.setUint32((i * chars + j) * 4, ch.codePointAt(0), true)));
  } else if (descr === "<f8") {
    body = new Uint8Array(Float64Array.from(/** @type {number[]} */ (data)).buffer);
  } else if (descr === "<i8") {
    body = new Uint8Array(BigInt64Array.from(/** @type {any[]} */ (data), (v) => BigInt(v)).buffer);
  } else throw new Error(`unsupported dtype ${descr}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n"; // numpy pads the header to 64 bytes
  const head = new TextEncoder().encode(header);
  const out = new Uint8Array(10 + head.length + body.length);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, head.length, true);
  out.set(head, 10);
  out.set(body, 10 + head.length);
  return out;
}
