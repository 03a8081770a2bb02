"""Preprocessing as ONNX nodes: decoded RGBA pixels -> the model's normalized input, bit-exact.

The nodes compute what ``runtime.preprocess.prepare_uint8`` then ``normalize`` compute for a decoded
RGBA array (the Python runtime with Pillow 13; ``web/src/preprocess.js`` is the same arithmetic):

1. alpha composited onto white (Pillow's ``alpha_composite``, 7-bit fixed point), then Pillow's
   RGB -> L (``(r*19595 + g*38470 + b*7471 + 0x8000) >> 16``) for gray models;
2. the aspect policy (``runtime/aspect.py``: crop box and fitted size in integer arithmetic);
3. Pillow's 8-bit separable resize (export/pixel_resize.py), coefficients computed in the graph from
   the dynamic input size;
4. the letterbox fill and the border polarity rule, then ``x * scale + offset`` in float32.

Input ``pixels``: uint8 [N, H, W, 4], RGBA, N images of one size (any H and W). Every intermediate
value is an integer held exactly (float32 below 2**24, float64 above). The graph does not refuse
what the runtime refuses (under ``MIN_IMAGE_SIDE`` pixels on a side, over the pixel limit): that
stays the application's check.
"""

from __future__ import annotations

import numpy as np

from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.preprocess import PreprocessSpec, normalize_constants

from .pixel_resize import FILTER_SUPPORT, Nodes, if_op, onnx_type, resize

PIXELS = "pixels"
PREFIX = "edgemeta_pixels/"


def check_pixel_spec(spec: PreprocessSpec) -> None:
    """ExportError unless the graph can compute ``spec``'s preprocessing exactly."""
    if spec.resize not in FILTER_SUPPORT:
        raise ExportError(
            f"bake --input pixels cannot build the {spec.resize!r} resize exactly; "
            f"it builds {', '.join(FILTER_SUPPORT)} (use --input normalized)"
        )


def add_pixel_nodes(
    spec: PreprocessSpec, out: str, *, prefix: str = PREFIX, prepared: str | None = None
) -> tuple[list, list]:
    """(nodes valid from opset 13 on, initializers) from graph input ``pixels`` (uint8 [N, H, W, 4])
    to ``out`` (float32 [N, C, S0, S1], the model's normalized input); with ``prepared``, also that
    uint8 [N, S0, S1, C] tensor (``prepare_uint8``'s result)."""
    check_pixel_spec(spec)
    g = Nodes(prefix)
    shape = g.op("Shape", PIXELS)
    h, w = g.op("Gather", shape, g.i(1)), g.op("Gather", shape, g.i(2))
    x = _to_channels(g, spec.channels)  # float64 [N, C, H, W]
    th, tw = spec.size
    if spec.aspect == "center_crop":
        x, h, w = _center_crop(g, x, h, w, th, tw)
    if spec.aspect == "letterbox":
        nw, nh = _fit_size(g, h, w, th, tw)
        x = _letterbox(g, resize(g, x, h, w, nh, nw, spec.resize), nh, nw, th, tw)
    else:
        x = resize(g, x, h, w, g.i(th), g.i(tw), spec.resize)
    x = _fix_polarity(g, x, spec)
    if prepared:
        g.op("Cast", g.op("Transpose", x, perm=[0, 2, 3, 1]), out=prepared, to=onnx_type("uint8"))
    scale, offset = normalize_constants(spec)
    shape4 = (1, spec.channels, 1, 1)
    x = g.op("Mul", g.op("Cast", x, to=onnx_type("float32")), g.const(scale.reshape(shape4), np.float32))
    g.op("Add", x, g.const(offset.reshape(shape4), np.float32), out=out)
    return g.nodes, g.inits


def pixel_input_info():
    """The ``pixels`` graph input: uint8 [batch, height, width, 4]."""
    from onnx import helper

    return helper.make_tensor_value_info(PIXELS, onnx_type("uint8"), ["batch", "height", "width", 4])


def pixel_model(spec: PreprocessSpec, opset: int = 17, output: str = "input", prepared: str = "prepared"):
    """A standalone onnx.ModelProto: ``pixels`` -> ``output`` float32 [N, C, S0, S1] and ``prepared``
    uint8 [N, S0, S1, C]."""
    from onnx import helper

    nodes, inits = add_pixel_nodes(spec, output, prepared=prepared)
    h, w = spec.size
    outputs = [
        helper.make_tensor_value_info(output, onnx_type("float32"), ["batch", spec.channels, h, w]),
        helper.make_tensor_value_info(prepared, onnx_type("uint8"), ["batch", h, w, spec.channels]),
    ]
    graph = helper.make_graph(nodes, "edgemeta_pixels", [pixel_input_info()], outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    # The oldest IR version the opset allows: onnx's newest is ahead of what onnxruntime(-web) reads.
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def _to_channels(g: Nodes, channels: int) -> str:
    """``pixels`` -> float64 [N, C, H, W]: alpha onto white (Pillow's alpha_composite with an opaque
    white destination), then RGB -> L when ``channels`` is 1. float32 is exact here: every value
    stays an integer below 2**24. Planes first: broadcasting over a trailing axis of 3 or 4 is
    several times slower in onnxruntime than over whole planes."""
    from onnx import helper

    f32 = np.float32
    x = g.op("Cast", g.op("Transpose", PIXELS, perm=[0, 3, 1, 2]), to=onnx_type("float32"))  # [N, 4, H, W]
    # One Split, not two Slices: onnxruntime would fuse those and rename an input of the If below
    rgb, alpha = g.name("rgb"), g.name("alpha")
    g.nodes.append(helper.make_node("Split", [x, g.i([3, 1])], [rgb, alpha], axis=1))
    # Compositing leaves opaque pixels as they are: a batch without transparency skips its 8 passes.
    opaque = g.op(
        "Equal",
        g.op("ReduceMin", g.op("Slice", PIXELS, g.i([3]), g.i([4]), g.i([3])), keepdims=0),
        g.const(255, np.uint8),
    )
    comp = g.sub()
    a128 = comp.op("Mul", alpha, comp.const(128.0, f32))
    # v*a*128 + 255*(255-a)*128 + (0x80 << 7), regrouped: 128*a*(v-255) + 8339584
    tmp = comp.op("Add", comp.op("Mul", comp.op("Sub", rgb, comp.const(255.0, f32)), a128), comp.const(8339584.0, f32))
    # SHIFTFORDIV255(tmp) >> 7 == ((tmp >> 8) + tmp) >> 15
    u = comp.op("Add", comp.op("Floor", comp.op("Mul", tmp, comp.const(1 / 256, f32))), tmp)
    x = if_op(g, opaque, g.sub(), rgb, comp, comp.op("Floor", comp.op("Mul", u, comp.const(1 / 32768, f32))), "float32")
    if channels == 1:
        r, gr, b = (g.op("Slice", x, g.i([c]), g.i([c + 1]), g.i([1])) for c in range(3))
        dot = g.op("Add", g.op("Mul", r, g.const(19595.0, f32)), g.op("Mul", gr, g.const(38470.0, f32)))
        dot = g.op("Add", dot, g.op("Add", g.op("Mul", b, g.const(7471.0, f32)), g.const(32768.0, f32)))
        x = g.op("Floor", g.op("Mul", dot, g.const(1 / 65536, f32)))
    return g.op("Cast", x, to=onnx_type("float64"))


def _center_crop(g: Nodes, x: str, h: str, w: str, th: int, tw: int) -> tuple[str, str, str]:
    """``aspect.crop_box`` in int64: (x cropped, crop height, crop width)."""
    wide = g.op("Greater", g.op("Mul", w, g.i(th)), g.op("Mul", h, g.i(tw)))
    cw = g.op("Div", g.op("Add", g.op("Mul", h, g.i(2 * tw)), g.i(th)), g.i(2 * th))
    cw = g.op("Where", wide, g.op("Min", w, g.op("Max", g.i(1), cw)), w)
    ch = g.op("Div", g.op("Add", g.op("Mul", w, g.i(2 * th)), g.i(tw)), g.i(2 * tw))
    ch = g.op("Where", wide, h, g.op("Min", h, g.op("Max", g.i(1), ch)))
    left = g.op("Div", g.op("Sub", w, cw), g.i(2))
    top = g.op("Div", g.op("Sub", h, ch), g.i(2))
    starts, ends = _vec(g, top, left), _vec(g, g.op("Add", top, ch), g.op("Add", left, cw))
    return g.op("Slice", x, starts, ends, g.i([2, 3])), ch, cw


def _fit_size(g: Nodes, h: str, w: str, th: int, tw: int) -> tuple[str, str]:
    """``aspect.fit_size`` in int64: (width, height) scaled to fit inside (th, tw)."""
    wide = g.op("Greater", g.op("Mul", w, g.i(th)), g.op("Mul", h, g.i(tw)))
    nh = g.op("Div", g.op("Add", g.op("Mul", h, g.i(2 * tw)), w), g.op("Mul", w, g.i(2)))
    nh = g.op("Where", wide, g.op("Min", g.i(th), g.op("Max", g.i(1), nh)), g.i(th))
    nw = g.op("Div", g.op("Add", g.op("Mul", w, g.i(2 * th)), h), g.op("Mul", h, g.i(2)))
    nw = g.op("Where", wide, g.i(tw), g.op("Min", g.i(tw), g.op("Max", g.i(1), nw)))
    return nw, nh


def _edge_mask(g: Nodes, h: str, w: str) -> str:
    """bool [h, w]: the one-pixel border of an h x w image (int64 scalar sizes)."""
    rows = g.op("Unsqueeze", g.op("Range", g.i(0), h, g.i(1)), g.i([1]))
    cols = g.op("Unsqueeze", g.op("Range", g.i(0), w, g.i(1)), g.i([0]))
    last_row, last_col = g.op("Sub", h, g.i(1)), g.op("Sub", w, g.i(1))
    on_row = g.op("Or", g.op("Equal", rows, g.i(0)), g.op("Equal", rows, last_row))
    on_col = g.op("Or", g.op("Equal", cols, g.i(0)), g.op("Equal", cols, last_col))
    return g.op("Or", on_row, on_col)


def _letterbox(g: Nodes, x: str, nh: str, nw: str, th: int, tw: int) -> str:
    """``aspect.letterbox``: float64 [N, C, nh, nw] centered in [N, C, th, tw] on the per-channel
    mean of its one-pixel border, rounded half up (int64)."""
    i64 = onnx_type("int64")
    edge = g.op("Cast", _edge_mask(g, nh, nw), to=i64)
    n = g.op("ReduceSum", edge, keepdims=0)
    sums = g.op("ReduceSum", g.op("Mul", g.op("Cast", x, to=i64), edge), g.i([2, 3]), keepdims=1)  # [N, C, 1, 1]
    fill = g.op("Div", g.op("Add", g.op("Mul", sums, g.i(2)), n), g.op("Mul", n, g.i(2)))
    top = g.op("Div", g.op("Sub", g.i(th), nh), g.i(2))
    left = g.op("Div", g.op("Sub", g.i(tw), nw), g.i(2))
    bottom = g.op("Sub", g.op("Sub", g.i(th), nh), top)
    right = g.op("Sub", g.op("Sub", g.i(tw), nw), left)
    pads = g.op("Concat", g.i([0, 0]), _vec(g, top, left), g.i([0, 0]), _vec(g, bottom, right), axis=0)
    padded = g.op("Pad", x, pads)
    rows = g.op("Unsqueeze", g.op("Range", g.i(0), g.i(th), g.i(1)), g.i([1]))  # [th, 1]
    cols = g.op("Unsqueeze", g.op("Range", g.i(0), g.i(tw), g.i(1)), g.i([0]))  # [1, tw]
    in_rows = g.op("And", g.op("GreaterOrEqual", rows, top), g.op("Less", rows, g.op("Add", top, nh)))
    in_cols = g.op("And", g.op("GreaterOrEqual", cols, left), g.op("Less", cols, g.op("Add", left, nw)))
    return g.op("Where", g.op("And", in_rows, in_cols), padded, g.op("Cast", fill, to=onnx_type("float64")))


def _fix_polarity(g: Nodes, x: str, spec: PreprocessSpec) -> str:
    """``preprocess.fix_polarity`` on float64 [N, C, S0, S1]: invert an image whose one-pixel
    border's mean says its background is the wrong way."""
    if spec.polarity == "none" or not spec.auto_polarity:
        return x
    h, w = spec.size
    count = (2 * (h + w) - 4 if min(h, w) > 1 else h * w) * spec.channels  # values on the border
    mask = g.op("Cast", _edge_mask(g, g.i(h), g.i(w)), to=onnx_type("float64"))  # made here: no constant of S0 x S1
    border = g.op("ReduceSum", g.op("Mul", x, mask), g.i([1, 2, 3]), keepdims=1)
    bright = g.op("Greater", border, g.d(127.5 * count))
    invert = bright if spec.polarity == "light_on_dark" else g.op("Not", bright)
    return g.op("Where", invert, g.op("Sub", g.d(255.0), x), x)


def _vec(g: Nodes, *scalars: str) -> str:
    """int64 [len(scalars)] from int64 scalars."""
    return g.op("Concat", *(g.op("Unsqueeze", s, g.i([0])) for s in scalars), axis=0)


def verification_pixels(images: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Batches of RGBA images (uint8 [n, H, W, 4], one size each) to check a pixel graph with, from
    ``images`` uint8 [N, S0, S1, C] at the model's size: those images opaque; the same enlarged to a
    non-square size with a partly transparent band; random noise with random alpha at 8x8 (the smallest
    size the runtime takes), 300x9 and 480x640."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rgb = np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images
    opaque = np.concatenate([rgb, np.full((*rgb.shape[:3], 1), 255, np.uint8)], axis=3)
    enlarged = np.stack([np.asarray(Image.fromarray(im).resize((61, 45), Image.Resampling.BILINEAR)) for im in opaque])
    enlarged[:, 30:40, :, 3] = rng.integers(0, 256, (len(enlarged), 10, 61), dtype=np.uint8)
    noise = [rng.integers(0, 256, (n, h, w, 4), dtype=np.uint8) for n, h, w in ((3, 8, 8), (2, 300, 9), (2, 480, 640))]
    return [opaque, enlarged, *noise]
