"""Fixtures for the JavaScript tests, made by the Python runtime at test time.

    python web/test/fixtures.py preprocess OUT   # tiny models + random images and Python's prepare() of them
    python web/test/fixtures.py classifier OUT   # default model: images, embeddings, predictions, a store
    python web/test/fixtures.py check-store OUT STORE  # Python's predictions with a store written by JavaScript
    python web/test/fixtures.py data OUT         # 1,000 Omniglot evaluation + 1,000 MNIST test images (EDGEMETA_DATA)
    python web/test/fixtures.py rgb OUT          # tiny 3-channel models, colour images, Python's answers (rgb_fixture.py)
    python web/test/fixtures.py check-rgb-store OUT MODEL STORE  # Python's answers with a JS store of an rgb model

Images are written as raw uint8 files (row-major [H, W, C]) beside a JSON index, so both runtimes
start from the same decoded pixels. Everything uses the public API of ``edgemeta.runtime``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgemeta.runtime import EmbeddingModel, FewShotClassifier


def model_metadata(
    size: tuple[int, int],
    channels: int,
    resize: str,
    metric: str = "sqeuclidean",
    *,
    aspect: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    support_shift: int = 0,
    data: str = "synthetic",
) -> dict:
    """The edgemeta metadata of a 16-d test model; ``aspect`` None: a file from before the aspect
    policies (read as "stretch")."""
    preprocess = {
        "size": list(size),
        "channels": channels,
        "resize": resize,
        "polarity": "light_on_dark" if channels == 1 else "none",
        "auto_polarity": True,
        "mean": list(mean) if mean is not None else [0.5] * channels,
        "std": list(std) if std is not None else [0.25] * channels,
    }
    if aspect is not None:
        preprocess["aspect"] = aspect
    return {
        "format_version": 1,
        "input_name": "images",
        "output_name": "embeddings",
        "embedding_dim": 16,
        "metric": metric,
        "threshold": None,
        "support_shift": support_shift,
        "preprocess": preprocess,
        "training": {"data": data},
        "accuracy": {},
    }


def save_model(
    path: Path, nodes: list, weights: dict[str, np.ndarray], channels: int, size: tuple[int, int], props: dict
) -> Path:
    """An ONNX file of ``nodes`` from ``images`` float32 [N, channels, h, w] to ``embeddings`` [N, 16],
    with ``weights`` as initializers and ``props`` as its metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", channels, *size])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", 16])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


def tiny_model(
    path: Path,
    size: tuple[int, int],
    channels: int,
    resize: str,
    metric: str = "sqeuclidean",
    props: dict[str, str] | None = None,
    aspect: str | None = None,
) -> Path:
    """A linear ONNX embedding model (flatten @ random W, 16-d) with edgemeta metadata."""
    from onnx import helper

    h, w = size
    weights = np.random.default_rng(7).standard_normal((channels * h * w, 16)).astype(np.float32) / 8
    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["embeddings"]),
    ]
    meta = model_metadata(size, channels, resize, metric, aspect=aspect)
    return save_model(
        path, nodes, {"W": weights}, channels, size, {"edgemeta": json.dumps(meta)} if props is None else props
    )


def random_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """uint8 [h, w, c]: noise, blobs or a stroke on a light or dark background."""
    kind = rng.integers(3)
    if kind == 0:
        img = rng.integers(0, 256, (h, w, c))
    else:
        img = np.full((h, w, c), 255 * int(rng.integers(2)))
        for _ in range(int(rng.integers(1, 6))):
            y, x = rng.integers(0, h), rng.integers(0, w)
            img[y : y + int(rng.integers(1, h)), x : x + int(rng.integers(1, w))] = rng.integers(0, 256, c)
    if c == 4 and kind != 2:
        img[..., 3] = rng.choice([0, 255, int(rng.integers(256))], size=(h, w))
    return img.astype(np.uint8)


def write_image(out: Path, name: str, img: np.ndarray) -> dict:
    (out / name).write_bytes(np.ascontiguousarray(img).tobytes())
    return {"file": name, "height": int(img.shape[0]), "width": int(img.shape[1]), "channels": int(img.shape[2])}


def preprocess(out: Path) -> None:
    models = {
        "gray_bilinear": tiny_model(out / "gray_bilinear.onnx", (28, 28), 1, "bilinear"),
        "gray_bicubic": tiny_model(out / "gray_bicubic.onnx", (20, 24), 1, "bicubic"),
        "rgb_lanczos": tiny_model(out / "rgb_lanczos.onnx", (16, 12), 3, "lanczos", metric="cosine"),
        "rgb_box": tiny_model(out / "rgb_box.onnx", (10, 14), 3, "box"),
        "gray_hamming": tiny_model(out / "gray_hamming.onnx", (9, 9), 1, "hamming"),
        "rgb_crop": tiny_model(out / "rgb_crop.onnx", (12, 20), 3, "bilinear", aspect="center_crop"),
        "gray_crop": tiny_model(out / "gray_crop.onnx", (28, 28), 1, "bicubic", aspect="center_crop"),
        "rgb_letterbox": tiny_model(out / "rgb_letterbox.onnx", (16, 10), 3, "lanczos", aspect="letterbox"),
        "gray_letterbox": tiny_model(out / "gray_letterbox.onnx", (28, 28), 1, "bilinear", aspect="letterbox"),
    }
    tiny_model(out / "no_metadata.onnx", (8, 8), 1, "bilinear", props={})
    tiny_model(out / "baked.onnx", (8, 8), 1, "bilinear", props={"edgemeta.classifier": "{}", "edgemeta": "{}"})
    rng = np.random.default_rng(0)
    cases = []
    for name, path in models.items():
        model = EmbeddingModel(path)
        for i in range(60):
            h, w = (int(v) for v in rng.integers(8, 160, 2))
            if i < 4:  # at the model's own size (any size is allowed there) and tiny upscales
                h, w = model.metadata["preprocess"]["size"] if i < 2 else (8 + i, 8)
            c = int(rng.choice([1, 3, 4]))
            img = random_image(rng, h, w, c)
            prepared = model.prepare(img if c != 1 else img[..., 0])[0]
            case = write_image(out, f"{name}_{i}.u8", img)
            (out / f"{name}_{i}.prepared").write_bytes(prepared.tobytes())
            emb = model.embed(img if c != 1 else img[..., 0])[0]
            cases.append({**case, "model": path.name, "prepared": f"{name}_{i}.prepared", "embedding": emb.tolist()})
    (out / "preprocess.json").write_text(json.dumps(cases))


def classifier_fixture(out: Path) -> None:
    """Default model: 8 classes x 3 shots of random strokes; queries; Python's predictions and a store."""
    model = EmbeddingModel.default()
    rng = np.random.default_rng(1)
    shapes = [random_image(rng, 40, 40, 1) for _ in range(8)]

    def noisy(base):
        return np.clip(base.astype(int) + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)

    support = {f"class {k}": [noisy(shapes[k]) for _ in range(3)] for k in range(8)}
    queries = [noisy(shapes[k % 8]) for k in range(16)] + [random_image(rng, 40, 40, 1) for _ in range(8)]
    clf = FewShotClassifier(model)
    index = {"support": {}, "queries": []}
    for label, imgs in support.items():
        clf.enroll(label, [i[..., 0] for i in imgs])
        index["support"][label] = [write_image(out, f"s_{label[-1]}_{j}.u8", im) for j, im in enumerate(imgs)]
    index["queries"] = [write_image(out, f"q_{j}.u8", im) for j, im in enumerate(queries)]
    index["expected"] = predictions(clf, queries)
    index["query_embeddings"] = model.embed([q[..., 0] for q in queries]).tolist()
    index["model"] = str(model.path)
    index["fingerprint"] = model.fingerprint
    clf.save(out / "python_store.npz")
    (out / "classifier.json").write_text(json.dumps(index))


def predictions(clf: FewShotClassifier, images: list[np.ndarray]) -> dict:
    arrays = [i[..., 0] if i.ndim == 3 and i.shape[2] == 1 else i for i in images]
    preds = clf.predict(arrays, top_k=3)
    return {
        "top3": [[[p.label, p.score, p.distance] for p in row] for row in preds],
        "classify": {r: clf.classify(arrays, reject=r) for r in ("strict", "balanced", "off")},
        "classify_far": {str(f): clf.classify(arrays, far=f) for f in (0.003, 0.05, 0.25)},
        "labels": clf.labels,
    }


def check_store(out: Path, store: Path) -> None:
    index = json.loads((out / "classifier.json").read_text())
    model = EmbeddingModel.default()
    clf = FewShotClassifier.load(store, model)
    queries = [
        np.fromfile(out / q["file"], dtype=np.uint8).reshape(q["height"], q["width"], q["channels"])
        for q in index["queries"]
    ]
    json.dump(predictions(clf, queries), sys.stdout)


if __name__ == "__main__":
    command, target = sys.argv[1], Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    if command == "preprocess":
        preprocess(target)
    elif command == "classifier":
        classifier_fixture(target)
    elif command == "check-store":
        check_store(target, Path(sys.argv[3]))
    elif command == "data":
        sys.path.insert(0, str(Path(__file__).parent))
        from data_fixture import data_fixture

        data_fixture(target)
    elif command in ("rgb", "check-rgb-store"):
        sys.path.insert(0, str(Path(__file__).parent))
        from rgb_fixture import check_store as check_rgb_store
        from rgb_fixture import rgb_fixture

        if command == "rgb":
            rgb_fixture(target)
        else:
            json.dump(check_rgb_store(target, sys.argv[3], Path(sys.argv[4])), sys.stdout)
    else:
        sys.exit(f"unknown command {command}")
