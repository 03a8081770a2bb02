"""The distance product of a big prototype index on onnxruntime's threads, with its slab minima.

``PrototypeIndex`` (runtime/prototype_index.py) needs, for a batch of queries, the float32 product
``work = queries @ matrix`` ([N, D + 1] x [D + 1, C]) and the element-wise minimum of its
``slabs`` equal column blocks, [N, C / slabs]. numpy runs the product on OpenBLAS's threads, which
keep a core busy for a long while after each call (slowing the next network call), and the
minima in a second, single-threaded pass over all N x C entries. Here one onnxruntime session does
both: a MatMul whose prototype matrix is packed once when the session is made (onnxruntime's
pre-packing of constant weights), a Reshape and a ReduceMin on the same threads, which spin only
``DEFAULT_SPIN_US`` afterwards. At 64 x 100,000 x 65 on a 2-vCPU Xeon: 3.6-4.7 ms against numpy's
6.0-7.1 ms for the product and the minima. Like numpy's product, it uses every core (onnxruntime's
default thread count), whatever the embedding model's ``threads``; the packed copy of the matrix
doubles the index's float32 memory (26 MB more at 100,000 classes of 64 dimensions).

The model is a few hundred bytes written here (the runtime does not depend on the ``onnx``
package); the prototype matrix reaches onnxruntime from memory as an external initializer, never
copied into the model. Before use, the session's product of a probe query is checked against
float64 within float32's error bound: the index's exactness proof assumes float32 arithmetic.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import ModelError
from .nearest import FLOAT32_ROUNDOFF
from .session import make_session

_FLOAT, _INT64 = 1, 7  # ONNX TensorProto data types
_INTS, _INT = 7, 2  # ONNX AttributeProto types
_CHECKED = 8192


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor_info(name: str, dims: tuple[int | str, ...]) -> bytes:
    """ValueInfoProto of a float tensor; a str dim is symbolic."""
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, _FLOAT) + _bytes(2, shape)))


def slab_product_model(rows: int, columns: int, slabs: int) -> bytes:
    """ONNX model bytes: input ``queries`` float32 [N, rows], outputs ``work`` = queries @
    ``matrix`` [N, columns] and ``minima`` [N, columns / slabs] (the minimum over the slabs,
    work viewed as [N, slabs, columns / slabs]); ``matrix`` [rows, columns] is an external
    initializer, supplied when the session is made. Field numbers: onnx/onnx.proto."""
    per_slab = columns // slabs
    external = b"".join(_bytes(13, _bytes(1, k) + _bytes(2, v)) for k, v in (("location", "matrix"), ("offset", "0")))
    matrix = _int(1, rows) + _int(1, columns) + _int(2, _FLOAT) + _bytes(8, "matrix") + external + _int(14, 1)
    shape = _int(1, 3) + _int(2, _INT64) + _bytes(8, "shape") + _bytes(9, struct.pack("<3q", 0, slabs, per_slab))
    axes = _bytes(1, "axes") + _int(8, 1) + _int(20, _INTS)
    keepdims = _bytes(1, "keepdims") + _int(3, 0) + _int(20, _INT)
    nodes = (
        _bytes(1, "queries") + _bytes(1, "matrix") + _bytes(2, "work") + _bytes(4, "MatMul"),
        _bytes(1, "work") + _bytes(1, "shape") + _bytes(2, "slabs") + _bytes(4, "Reshape"),
        _bytes(1, "slabs") + _bytes(2, "minima") + _bytes(4, "ReduceMin") + _bytes(5, axes) + _bytes(5, keepdims),
    )
    graph = b"".join(
        [
            *(_bytes(1, node) for node in nodes),
            _bytes(2, "slab_product"),
            _bytes(5, matrix),
            _bytes(5, shape),
            _bytes(11, _tensor_info("queries", ("N", rows))),
            _bytes(12, _tensor_info("work", ("N", columns))),
            _bytes(12, _tensor_info("minima", ("N", per_slab))),
        ]
    )
    return _int(1, 8) + _bytes(2, "edgemeta") + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 17))


class SlabProduct:
    """``queries @ matrix`` and its slab minima in one onnxruntime call (the module docstring).

    ``matrix`` float32 [R, C], C a multiple of ``slabs``; kept referenced (onnxruntime reads it
    from this memory). Raises ``ModelError`` when this onnxruntime cannot run the model or its
    product is not float32-exact on a probe query."""

    def __init__(self, matrix: np.ndarray, slabs: int) -> None:
        rows, columns = matrix.shape
        if matrix.dtype != np.float32 or columns % slabs or not matrix.flags.c_contiguous:
            raise ValueError("matrix must be C-contiguous float32 with a multiple of slabs columns")
        self.matrix = matrix
        try:
            self._session = make_session(slab_product_model(rows, columns, slabs), initializers={"matrix": matrix})
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"the slab product session cannot be made here: {str(e).splitlines()[0][:200]}") from None
        self._check(np.random.default_rng(0).standard_normal((1, rows)).astype(np.float32))

    def __call__(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """queries float32 [N, R] -> work float32 [N, C], minima float32 [N, C / slabs]."""
        work, minima = self._session.run(None, {"queries": queries})
        return work, minima

    def _check(self, probe: np.ndarray) -> None:
        """A lower-precision mode would show on any column: the first ``_CHECKED`` are compared."""
        work, minima = self(probe)
        if not np.array_equal(minima, work.reshape(len(work), -1, minima.shape[1]).min(axis=1)):
            raise ModelError("this onnxruntime's slab minima differ from its product")
        part = self.matrix[:, :_CHECKED].astype(np.float64)
        finite = np.isfinite(part).all(axis=0)  # padding columns hold +inf
        q = probe.astype(np.float64)
        error = np.abs(work[0, :_CHECKED][finite] - (q @ part[:, finite])[0])
        if not (error <= (q.shape[1] + 2) * FLOAT32_ROUNDOFF * (np.abs(q) @ np.abs(part[:, finite]))[0]).all():
            raise ModelError("this onnxruntime's float32 product is not exact enough for the prototype index")
