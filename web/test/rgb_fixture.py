"""The colour parity fixture: tiny 3-channel convolutional models made here (polarity none,
per-channel mean/std, letterbox and center_crop aspect, support shifts, a rejection rule), colour
images of several sizes in gray/RGB/RGBA, and what the Python runtime's public API gives for them.

Written to OUT: each model ``<name>.onnx``; raw images ``*.u8`` ([H, W, C] uint8); ``rgb.json`` with,
per model, the query embeddings, the predictions (top 3, every operating point, 3 query views) and
``<name>_python_store.npz``. Run by ``fixtures.py rgb OUT``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fixtures import model_metadata, save_model

from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime.rejection import OperatingPoint, RejectionRule

# Colour-only classes: the same disc in different colours, and one square, on varied backgrounds.
COLOURS = {
    "red disc": (220, 30, 30),
    "green disc": (30, 190, 40),
    "blue disc": (40, 60, 220),
    "yellow disc": (230, 210, 20),
}
SQUARE = ("red square", (220, 30, 30))
BETA, GAMMA = 0.5, 0.2
# name: (size [h, w], resize, aspect, metric, mean, std)
MODELS = {
    "rgb_letterbox": ((20, 16), "bilinear", "letterbox", "sqeuclidean", (0.48, 0.45, 0.41), (0.23, 0.22, 0.26)),
    "rgb_crop": ((16, 24), "bicubic", "center_crop", "cosine", (0.52, 0.40, 0.47), (0.29, 0.21, 0.24)),
}


def conv_model(path: Path, name: str, rejection: dict | None) -> Path:
    """Conv(3->6, 3x3, stride 2) + ReLU + flatten @ W (16-d), seeded weights, with edgemeta metadata."""
    from onnx import helper

    (h, w), resize, aspect, metric, mean, std = MODELS[name]
    rng = np.random.default_rng(11)
    k = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) / 3
    oh, ow = (h + 1) // 2, (w + 1) // 2
    dense = rng.standard_normal((6 * oh * ow, 16)).astype(np.float32) / 8
    nodes = [
        helper.make_node("Conv", ["images", "K"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("Flatten", ["act"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["embeddings"]),
    ]
    meta = model_metadata(
        (h, w), 3, resize, metric, aspect=aspect, mean=mean, std=std, support_shift=1, data="synthetic colour shapes"
    )
    if rejection is not None:
        meta["rejection"] = rejection
    return save_model(path, nodes, {"K": k, "W": dense}, 3, (h, w), {"edgemeta": json.dumps(meta)})


def shape_image(rng: np.random.Generator, colour: tuple[int, int, int], square: bool) -> np.ndarray:
    """uint8 [h, w, 3], h and w in 8..120: a coloured disc (or square) on a noisy, gradient or plain background."""
    h, w = (int(v) for v in rng.integers(8, 121, 2))
    kind = rng.integers(3)
    if kind == 0:
        img = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    elif kind == 1:
        ramp = np.linspace(0, 1, w)[None, :, None]
        img = (1 - ramp) * rng.integers(0, 256, 3) + ramp * rng.integers(0, 256, 3) + np.zeros((h, 1, 1))
    else:
        img = np.zeros((h, w, 3)) + rng.integers(0, 256, 3)
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6), min(h, w) * rng.uniform(0.25, 0.4)
    inside = (np.maximum(abs(yy - cy), abs(xx - cx)) < r) if square else ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    img[inside] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def as_form(rng: np.random.Generator, img: np.ndarray, form: int) -> np.ndarray:
    """The image as gray [h, w, 1] (form 0), RGB (1) or RGBA with partly transparent pixels (2)."""
    if form == 0:
        rgb = img.astype(np.uint32)
        return (((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8))[
            ..., None
        ]
    if form == 1:
        return img
    alpha = rng.choice([0, 255, int(rng.integers(1, 255))], size=img.shape[:2], p=[0.1, 0.7, 0.2])
    return np.concatenate([img, alpha[..., None].astype(np.uint8)], axis=2)


def python_form(img: np.ndarray) -> np.ndarray:
    """What the Python runtime is given: gray images as (H, W), colour ones as (H, W, C)."""
    return img[..., 0] if img.shape[2] == 1 else img


def gap_tau(scores: np.ndarray, at: float) -> float:
    """A tau between two sorted scores near the ``at`` quantile with a gap of over 2 % between them,
    so that float rounding in either runtime cannot move a decision across it."""
    s = np.sort(scores)
    gaps = [i for i in range(len(s) // 6, 5 * len(s) // 6) if s[i + 1] / s[i] > 1.02]
    i = min(gaps, key=lambda g: abs(g - at * len(s)))
    return float(np.sqrt(s[i] * s[i + 1]))


def enroll_all(clf: FewShotClassifier, support: dict[str, list[np.ndarray]]) -> None:
    for label, images in support.items():
        clf.enroll(label, [python_form(i) for i in images])


def fitted_rule(path: Path, name: str, support: dict, queries: list[np.ndarray]) -> dict:
    """A rejection rule whose taus fall in gaps between the queries' relative distances (made on a
    rule-less copy of the model, so that both answers, accepted and unknown, occur)."""
    clf = FewShotClassifier(EmbeddingModel(conv_model(path, name, None)))
    enroll_all(clf, support)
    labels, protos = clf.prototypes()
    sq = {lab: float(np.dot(p.astype(np.float64), p.astype(np.float64))) for lab, p in zip(labels, protos)}
    unit = OperatingPoint(1.0, BETA, GAMMA, True)
    preds = clf.predict([python_form(q) for q in queries])
    scores = np.array(
        [p[0].distance / unit.limits(len(support[p[0].label]), len(labels), sq[p[0].label]) for p in preds]
    )
    strict, balanced = gap_tau(scores, 0.35), gap_tau(scores, 0.6)
    rule = RejectionRule(BETA, GAMMA, strict, balanced, ((0.01, strict), (0.1, balanced), (0.3, 2 * balanced)))
    return rule.to_dict()


def write_image(out: Path, name: str, img: np.ndarray) -> dict:
    (out / name).write_bytes(np.ascontiguousarray(img).tobytes())
    return {"file": name, "height": int(img.shape[0]), "width": int(img.shape[1]), "channels": int(img.shape[2])}


def images(rng: np.random.Generator) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Support (2-4 shots per class, RGB or RGBA) and queries (each class in gray, RGB and RGBA, and
    shapes in colours never enrolled)."""
    classes = {**{k: (v, False) for k, v in COLOURS.items()}, SQUARE[0]: (SQUARE[1], True)}
    support = {
        label: [as_form(rng, shape_image(rng, colour, sq), 1 + (j % 2)) for j in range(2 + k % 3)]
        for k, (label, (colour, sq)) in enumerate(classes.items())
    }
    queries = [as_form(rng, shape_image(rng, c, sq), f) for (c, sq) in classes.values() for f in (0, 1, 2, 1)]
    odd = [(200, 120, 240), (20, 20, 20), (250, 250, 250), (120, 70, 20)]
    queries += [as_form(rng, shape_image(rng, c, bool(i % 2)), 1 + i % 2) for i, c in enumerate(odd)]
    return support, queries


def predictions(clf: FewShotClassifier, queries: list[np.ndarray]) -> dict:
    arrays = [python_form(q) for q in queries]
    return {
        "labels": clf.labels,
        "top3": [[[p.label, p.score, p.distance] for p in row] for row in clf.predict(arrays, top_k=3)],
        "classify": {r: clf.classify(arrays, reject=r) for r in ("strict", "balanced", "off")},
        "classify_far": {str(f): clf.classify(arrays, far=f) for f in (0.01, 0.1)},
    }


def rgb_fixture(out: Path) -> None:
    rng = np.random.default_rng(5)
    support, queries = images(rng)
    index: dict = {"support": {}, "queries": [write_image(out, f"rgb_q{j}.u8", q) for j, q in enumerate(queries)]}
    for label, imgs in support.items():
        index["support"][label] = [
            write_image(out, f"rgb_s_{label[:3]}{label[-3:]}_{j}.u8", im) for j, im in enumerate(imgs)
        ]
    index["models"] = {}
    for name in MODELS:
        rule = fitted_rule(out / f"{name}_plain.onnx", name, support, queries)
        model = EmbeddingModel(conv_model(out / f"{name}.onnx", name, rule))
        clf = FewShotClassifier(model)
        enroll_all(clf, support)
        clf.save(out / f"{name}_python_store.npz")
        views = FewShotClassifier.load(out / f"{name}_python_store.npz", model, query_views=3)
        arrays = [python_form(q) for q in queries]
        index["models"][name] = {
            "path": str(model.path),
            "fingerprint": model.fingerprint,
            "embeddings": model.embed(arrays).tolist(),
            "prepared": [model.prepare(a)[0].reshape(-1).tolist() for a in arrays[:6]],
            "expected": predictions(clf, queries),
            "top3_views3": [[[p.label, p.score, p.distance] for p in row] for row in views.predict(arrays, top_k=3)],
        }
    (out / "rgb.json").write_text(json.dumps(index))


def check_store(out: Path, name: str, store: Path) -> dict:
    """Python's predictions for the fixture's queries with a store written elsewhere (JavaScript)."""
    index = json.loads((out / "rgb.json").read_text())
    clf = FewShotClassifier.load(store, EmbeddingModel(index["models"][name]["path"]))
    queries = [
        np.fromfile(out / q["file"], dtype=np.uint8).reshape(q["height"], q["width"], q["channels"])
        for q in index["queries"]
    ]
    return predictions(clf, queries)
