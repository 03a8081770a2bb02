// Reads an ONNX file's metadata_props without onnxruntime (whose JavaScript API does not expose
// custom metadata): a minimal protobuf walk over ModelProto field 14 (StringStringEntryProto:
// key = 1, value = 2). Every other field is skipped by its wire type.

import { ModelError } from "./errors.js";

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The varint at `pos` of `buf`: [value, next position]. Values above 2**53 are not needed here. */
function varint(buf, pos) {
  let value = 0;
  let factor = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new ModelError("not a valid ONNX model (truncated protobuf)");
    const b = buf[pos++];
    value += (b & 0x7f) * factor;
    if (b < 0x80) return [value, pos];
    factor *= 128;
  }
  throw new ModelError("not a valid ONNX model (bad protobuf varint)");
}

/** Calls `visit(field, start, end)` for each length-delimited field of the message in buf[start, end). */
function fields(buf, start, end, visit) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) [, pos] = varint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len;
      [len, pos] = varint(buf, pos);
      if (pos + len > end) throw new ModelError("not a valid ONNX model (truncated protobuf field)");
      visit(field, pos, pos + len);
      pos += len;
    } else throw new ModelError(`not a valid ONNX model (protobuf wire type ${wire})`);
  }
  if (pos !== end) throw new ModelError("not a valid ONNX model (truncated protobuf)");
}

/**
 * The `metadata_props` of an ONNX ModelProto as {key: value}.
 * @param {Uint8Array} bytes the whole .onnx file @returns {Record<string, string>}
 */
export function readOnnxMetadata(bytes) {
  /** @type {Record<string, string>} */
  const props = {};
  fields(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    let key = "";
    let value = "";
    fields(bytes, start, end, (f, s, e) => {
      try {
        if (f === 1) key = decoder.decode(bytes.subarray(s, e));
        else if (f === 2) value = decoder.decode(bytes.subarray(s, e));
      } catch {
        throw new ModelError("the model's metadata is not UTF-8");
      }
    });
    props[key] = value;
  });
  return props;
}
