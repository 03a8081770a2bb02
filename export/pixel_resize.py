"""Pillow's 8-bit separable resize as ONNX nodes, exact for any input size (export/pixel_graph.py uses it).

Per axis, the filter's weights are computed in the graph from the dynamic size as Pillow's
``precompute_coeffs`` computes them (float64, operation for operation; the row sums by CumSum, which
adds left to right as Pillow does) and rounded to 22-bit integers as ``normalize_coeffs_8bpc`` rounds
them. Each pass is then a float64 MatMul: products of uint8 and 22-bit integers, and their sums, are
integers far below 2**53, so exact whatever the summation order. Each pass ends as Pillow's does:
``(sum + 2**21) >> 22`` clipped to 0..255, and Pillow 13 runs the vertical pass first when the height
shrinks by more than twice what the width shrinks (an ``If``; web/src/preprocess.js mirrors the same).
hamming and lanczos take sin and cos: exact as long as onnxruntime's agree with the C library's to the
last bit (they did on every test image; box, bilinear and bicubic are pure arithmetic).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Pillow's resampling filters built exactly (their support, as in libImaging/Resample.c). NEAREST is
# another algorithm in Pillow (an affine transform) that neither this graph nor preprocess.js has.
FILTER_SUPPORT = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}
PRECISION_BITS = 22  # Pillow's 8-bit coefficients: 32 - 8 - 2


class Nodes:
    """A growing list of nodes (valid from opset 13 on) and initializers with unique names under
    ``prefix``; equal constants are one initializer."""

    def __init__(self, prefix: str, shared: tuple[list, dict, list] | None = None) -> None:
        self.prefix, self.nodes = prefix, []
        self.inits, self._consts, self._counter = shared if shared is not None else ([], {}, [0])

    def sub(self) -> Nodes:
        """A builder for an If branch: its own nodes, the shared constants and names."""
        return Nodes(self.prefix, (self.inits, self._consts, self._counter))

    def name(self, hint: str) -> str:
        self._counter[0] += 1
        return f"{self.prefix}{hint}_{self._counter[0]}"

    def const(self, value: Any, dtype: Any) -> str:
        from onnx import numpy_helper

        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.name("c")
            self.inits.append(numpy_helper.from_array(array, self._consts[key]))
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def d(self, value: float) -> str:
        """A float64 scalar constant."""
        return self.const(value, np.float64)

    def i(self, value: Any) -> str:
        """An int64 constant (scalar or list)."""
        return self.const(value, np.int64)


def onnx_type(name: str) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(name))


def _kernel(g: Nodes, t: str, name: str) -> str:
    """Pillow's filter ``name`` at float64 positions ``t``, operation for operation (Resample.c)."""
    zero = g.d(0.0)
    if name == "box":
        inside = g.op("And", g.op("Greater", t, g.d(-0.5)), g.op("LessOrEqual", t, g.d(0.5)))
        return g.op("Where", inside, g.d(1.0), zero)
    x = g.op("Abs", t)
    if name == "bilinear":
        return g.op("Where", g.op("Less", x, g.d(1.0)), g.op("Sub", g.d(1.0), x), zero)
    if name == "bicubic":  # a = -0.5: ((a + 2) x - (a + 3)) x x + 1 and (((x - 5) x + 8) x - 4) a
        near = g.op("Mul", g.op("Mul", g.op("Sub", g.op("Mul", g.d(1.5), x), g.d(2.5)), x), x)
        near = g.op("Add", near, g.d(1.0))
        far = g.op("Add", g.op("Mul", g.op("Sub", x, g.d(5.0)), x), g.d(8.0))
        far = g.op("Mul", g.op("Sub", g.op("Mul", far, x), g.d(4.0)), g.d(-0.5))
        return g.op("Where", g.op("Less", x, g.d(1.0)), near, g.op("Where", g.op("Less", x, g.d(2.0)), far, zero))
    if name == "hamming":  # sin(x)/x * (0.54f + 0.46f cos(x)), x = |t| pi; 1 at 0, 0 from 1 on
        px = g.op("Mul", x, g.d(np.pi))
        safe = g.op("Where", g.op("Equal", px, zero), g.d(1.0), px)
        window = g.op("Add", g.d(float(np.float32(0.54))), g.op("Mul", g.d(float(np.float32(0.46))), g.op("Cos", px)))
        v = g.op("Mul", g.op("Div", g.op("Sin", safe), safe), window)
        return g.op("Where", g.op("Equal", x, zero), g.d(1.0), g.op("Where", g.op("Less", x, g.d(1.0)), v, zero))
    # lanczos: sinc(t) sinc(t / 3) for -3 <= t < 3
    v = g.op("Mul", _sinc(g, t), _sinc(g, g.op("Div", t, g.d(3.0))))
    inside = g.op("And", g.op("LessOrEqual", g.d(-3.0), t), g.op("Less", t, g.d(3.0)))
    return g.op("Where", inside, v, zero)


def _sinc(g: Nodes, t: str) -> str:
    """Pillow's sinc_filter: 1 at 0, else sin(t pi) / (t pi)."""
    zero = g.d(0.0)
    px = g.op("Mul", t, g.d(np.pi))
    safe = g.op("Where", g.op("Equal", px, zero), g.d(1.0), px)
    return g.op("Where", g.op("Equal", t, zero), g.d(1.0), g.op("Div", g.op("Sin", safe), safe))


def _coefficients(g: Nodes, in_size: str, out_size: str, name: str) -> str:
    """float64 [out, in]: Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis (int64
    scalar sizes), each row's integer weights at their input columns, zero elsewhere."""
    f64 = onnx_type("float64")
    n_in, n_out = g.op("Cast", in_size, to=f64), g.op("Cast", out_size, to=f64)
    scale = g.op("Div", n_in, n_out)
    filterscale = g.op("Max", scale, g.d(1.0))
    support = g.op("Mul", filterscale, g.d(FILTER_SUPPORT[name]))
    ss = g.op("Div", g.d(1.0), filterscale)
    xx = g.op("Cast", g.op("Range", g.i(0), out_size, g.i(1)), to=f64)
    center = g.op("Unsqueeze", g.op("Mul", g.op("Add", xx, g.d(0.5)), scale), g.i([1]))  # [out, 1]
    # (int)(v) is floor here: xmin's negative values are clamped to 0 either way
    xmin = g.op("Max", g.op("Floor", g.op("Add", g.op("Sub", center, support), g.d(0.5))), g.d(0.0))
    xend = g.op("Min", g.op("Floor", g.op("Add", g.op("Add", center, support), g.d(0.5))), n_in)
    i = g.op("Unsqueeze", g.op("Cast", g.op("Range", g.i(0), in_size, g.i(1)), to=f64), g.i([0]))  # [1, in]
    t = g.op("Mul", g.op("Add", g.op("Sub", i, center), g.d(0.5)), ss)
    taps = g.op("And", g.op("GreaterOrEqual", i, xmin), g.op("Less", i, xend))
    w = g.op("Where", taps, _kernel(g, t, name), g.d(0.0))
    # CumSum adds left to right, as Pillow's ww += w; its last column is the row's sum
    ww = g.op("Slice", g.op("CumSum", w, g.i(1)), g.i([-1]), g.i([np.iinfo(np.int64).max]), g.i([1]))
    v = g.op("Where", g.op("Equal", ww, g.d(0.0)), w, g.op("Div", w, ww))
    fixed = g.op("Mul", v, g.d(float(1 << PRECISION_BITS)))
    negative = g.op("Ceil", g.op("Add", fixed, g.d(-0.5)))
    return g.op("Where", g.op("Less", v, g.d(0.0)), negative, g.op("Floor", g.op("Add", fixed, g.d(0.5))))


def _pass(g: Nodes, x: str, k: str, horizontal: bool) -> str:
    """One of Pillow's 8-bit passes: float64 [N, C, h, w] through coefficients ``k`` [out, in] on the
    width (``horizontal``) or the height, then (sum + 2**21) >> 22 clipped to 0..255."""
    s = g.op("MatMul", x, g.op("Transpose", k, perm=[1, 0])) if horizontal else g.op("MatMul", k, x)
    s = g.op("Floor", g.op("Mul", g.op("Add", s, g.d(float(1 << (PRECISION_BITS - 1)))), g.d(2.0**-PRECISION_BITS)))
    return g.op("Min", g.op("Max", s, g.d(0.0)), g.d(255.0))


def resize(g: Nodes, x: str, h: str, w: str, out_h: str, out_w: str, name: str) -> str:
    """Pillow's ``Image.resize`` of float64 [N, C, h, w] (integers 0..255) to [N, C, out_h, out_w].
    An axis whose size does not change gets identity coefficients, an exact no-op, as Pillow's skip."""
    kh, kv = _coefficients(g, w, out_w, name), _coefficients(g, h, out_h, name)
    shrink_h, shrink_w = g.op("Sub", h, out_h), g.op("Sub", w, out_w)
    vertical_first = g.op("And", g.op("Greater", h, out_h), g.op("Greater", shrink_h, g.op("Mul", shrink_w, g.i(2))))
    v, hz = g.sub(), g.sub()
    v_out = _pass(v, _pass(v, x, kv, False), kh, True)
    hz_out = _pass(hz, _pass(hz, x, kh, True), kv, False)
    return if_op(g, vertical_first, v, v_out, hz, hz_out, "float64")


def if_op(g: Nodes, cond: str, then: Nodes, then_out: str, other: Nodes, other_out: str, dtype: str) -> str:
    """An ``If`` on bool scalar ``cond`` whose branches are the nodes of ``then`` and ``other`` (from
    ``g.sub()``), giving ``then_out`` or ``other_out`` (of numpy type ``dtype``)."""
    from onnx import helper

    graphs = []
    for b, out in ((then, then_out), (other, other_out)):
        final = b.op("Identity", out)  # a branch's output is made inside it, even when it is outer
        info = helper.make_tensor_value_info(final, onnx_type(dtype), None)
        graphs.append(helper.make_graph(b.nodes, g.name("branch"), [], [info]))
    return g.op("If", cond, then_branch=graphs[0], else_branch=graphs[1])
