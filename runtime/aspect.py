"""The aspect policies: how an image whose aspect ratio differs from the model's is fitted to it.

``stretch`` resizes to the model's size (every model file from before the policies); ``center_crop``
takes the largest centered crop of the model's aspect; ``letterbox`` scales to fit and pads. Sizes
are rounded in integer arithmetic so that the JavaScript copy (web/src/aspect.js) matches bit for bit.
"""

from __future__ import annotations

import numpy as np

ASPECTS = ("stretch", "center_crop", "letterbox")


def crop_box(w: int, h: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centered crop of a w x h image with the aspect of
    ``size`` (height, width); sides rounded half up."""
    th, tw = size
    if w * th > h * tw:  # wider than the model: keep the full height
        cw, ch = min(w, max(1, (2 * h * tw + th) // (2 * th))), h
    else:
        cw, ch = w, min(h, max(1, (2 * w * th + tw) // (2 * tw)))
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def fit_size(w: int, h: int, size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a w x h image scaled to fit inside ``size`` (height, width), aspect kept."""
    th, tw = size
    if w * th > h * tw:
        return tw, min(th, max(1, (2 * h * tw + w) // (2 * w)))
    return min(tw, max(1, (2 * w * th + h) // (2 * h))), th


def letterbox(fitted: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, C] (fitted inside ``size``) -> [size[0], size[1], C], centered on a fill of the
    per-channel mean of its one-pixel border, rounded half up: the background for ink on paper,
    a neutral colour of the photo's own edge otherwise."""
    h, w, c = fitted.shape
    edge = np.zeros((h, w), dtype=bool)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    border = fitted[edge].astype(np.int64)  # [B, C]
    n = border.shape[0]
    out = np.empty((size[0], size[1], c), dtype=np.uint8)
    out[...] = (2 * border.sum(axis=0) + n) // (2 * n)
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    out[top : top + h, left : left + w] = fitted
    return out
