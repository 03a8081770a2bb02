"""export/pixel_graph.py: decoded RGBA pixels -> the model's input inside ONNX, equal to the runtime's
preprocessing (uint8 stage bit-identical), and ``bake --input pixels`` equal to FewShotClassifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from tiny_models import class_image, linear_model, metadata

from edgemeta.export.bake import bake
from edgemeta.export.pixel_graph import pixel_model
from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime.images import to_uint8_images
from edgemeta.runtime.preprocess import PreprocessSpec, fix_polarity, normalize, prepare_uint8

MODELS = Path(__file__).resolve().parents[1] / "models"
RGB = {"channels": 3, "size": (24, 32), "polarity": "none", "mean": (0.5, 0.45, 0.4), "std": (0.25, 0.2, 0.3)}
SPECS = {
    "gray-shipped": PreprocessSpec(),  # 28x28 light_on_dark, auto polarity, bilinear, stretch
    "gray-letterbox-bicubic": PreprocessSpec(polarity="dark_on_light", aspect="letterbox", resize="bicubic"),
    "gray-crop-lanczos": PreprocessSpec(aspect="center_crop", resize="lanczos", mean=(0.5,), std=(0.25,)),
    "rgb-stretch": PreprocessSpec(**RGB),
    "rgb-center_crop": PreprocessSpec(**RGB, aspect="center_crop"),
    "rgb-letterbox": PreprocessSpec(**RGB, aspect="letterbox"),
    "rgb-letterbox-hamming": PreprocessSpec(**{**RGB, "size": (20, 20)}, aspect="letterbox", resize="hamming"),
    "rgb-stretch-box-polarity": PreprocessSpec(**{**RGB, "polarity": "dark_on_light"}, resize="box"),
}
FIXED_SIZES = [(8, 8), (28, 28), (24, 32), (700, 500), (500, 700), (9, 300), (300, 9), (480, 640), (29, 27)]


def rgba_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 [h, w, 4] of one of four kinds: noise with random alpha; light or dark strokes on the other;
    dark strokes on a transparent background (a drawing canvas); a colour gradient, partly transparent."""
    kind = rng.integers(4)
    if kind == 0:
        return rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    img = np.empty((h, w, 4), dtype=np.uint8)
    if kind == 3:
        yy, xx = np.mgrid[0:h, 0:w]
        for c in range(3):
            img[..., c] = (rng.integers(256) + xx * rng.integers(-3, 4) + yy * rng.integers(-3, 4)) % 256
        img[..., 3] = np.where(xx > w // 2, rng.integers(256), 255)
        return img
    bg = rng.choice([0, 255]) if kind == 1 else 0
    img[...] = bg
    img[..., 3] = 255 if kind == 1 else 0
    for _ in range(3):
        y, x = rng.integers(0, h), rng.integers(0, w)
        img[y : y + max(1, h // 5), x : x + max(1, w // 6), :3] = 255 - bg if kind == 1 else rng.integers(0, 80)
        img[y : y + max(1, h // 5), x : x + max(1, w // 6), 3] = 255
    return img


def random_images(seed: int, n: int = 30) -> list[np.ndarray]:
    """``n`` RGBA images: the fixed sizes (tiny to 700x500, odd, non-square), then random sizes 8..700."""
    rng = np.random.default_rng(seed)
    sizes = FIXED_SIZES + [tuple(int(v) for v in np.exp(rng.uniform(np.log(8), np.log(700), 2))) for _ in range(n)]
    return [rgba_image(rng, h, w) for h, w in sizes[:n]]


def session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", list(SPECS))
def test_graph_equals_runtime_preprocessing(name: str) -> None:
    spec = SPECS[name]
    sess = session(pixel_model(spec))
    inverted = set()
    for i, img in enumerate(random_images(seed=len(name))):
        x, prepared = sess.run(["input", "prepared"], {"pixels": img[None]})
        expected = prepare_uint8(img, spec)
        assert prepared.dtype == np.uint8 and np.array_equal(prepared, expected), (name, img.shape, i)
        assert x.dtype == np.float32 and np.abs(x - normalize(expected, spec)).max() <= 1e-6
        unfixed = to_uint8_images(img, spec.size, spec.channels, spec.resize, spec.aspect)
        inverted.add(fix_polarity(unfixed, spec) is not unfixed)
    if spec.polarity != "none":  # the images exercise both sides of the polarity rule
        assert inverted == {True, False}


def test_graph_takes_batches_of_one_size() -> None:
    spec = SPECS["rgb-letterbox"]
    sess = session(pixel_model(spec))
    rng = np.random.default_rng(3)
    batch = np.stack([rgba_image(rng, 97, 41) for _ in range(5)])
    x, prepared = sess.run(["input", "prepared"], {"pixels": batch})
    assert np.array_equal(prepared, prepare_uint8(list(batch), spec))
    for i in range(len(batch)):
        assert np.array_equal(x[i : i + 1], sess.run(["input"], {"pixels": batch[i : i + 1]})[0])


def _queries(size: int, channels: int, seed: int) -> list[np.ndarray]:
    """RGBA queries: class images enlarged to several sizes (some with a transparent band), and noise."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (h, w) in enumerate([(size, size), (61, 45), (200, 300), (9, 40), (640, 480), (33, 33)] * 2):
        gray = Image.fromarray(class_image(k % 4, rng, size)).resize((w, h), Image.Resampling.BICUBIC)
        rgb = np.repeat(np.asarray(gray)[..., None], 3, axis=2)
        if channels == 3:
            rgb = (rgb * rng.uniform(0.3, 1.0, 3)).astype(np.uint8)
        alpha = np.full((h, w, 1), 255, np.uint8)
        alpha[h // 3 : h // 2] = rng.integers(0, 256)
        out.append(np.concatenate([rgb, alpha], axis=2))
    return out + random_images(seed, 6)


def _tiny_classifier(tmp_path: Path, channels: int) -> tuple[EmbeddingModel, Path]:
    """A tiny linear model (gray 28x28 scaled identity, or RGB 16x16 letterbox random projection) and a store
    of 4 classes of ``class_image``."""
    rng = np.random.default_rng(channels)
    # Small weights keep distances near those of trained models: far larger ones (a 784-pixel identity
    # on noise) would move float32 scores by more than bake's own check allows.
    if channels == 1:
        path = linear_model(tmp_path / "m.onnx", 0.1 * np.eye(28 * 28), size=28)
    else:
        meta = metadata(24, 16, 3)
        meta["preprocess"].update(aspect="letterbox", mean=[0.4, 0.5, 0.6], std=[0.3, 0.2, 0.25])
        path = linear_model(tmp_path / "m.onnx", rng.normal(0, 0.01, (3 * 16 * 16, 24)), 16, 3, meta)
    model = EmbeddingModel(path)
    clf = FewShotClassifier(model)
    size = model.meta.preprocess.size[0]
    for k in range(4):
        clf.enroll(f"c{k}", [np.repeat(class_image(k, rng, size)[..., None], channels, axis=2) for _ in range(3)])
    clf.save(tmp_path / "s.npz")
    return model, tmp_path / "s.npz"


def _threshold(clf: FewShotClassifier, queries: list[np.ndarray]) -> float:
    """A squared distance between two queries' nearest distances, away from both: some accepted, some not."""
    nearest = np.sort([row[0].distance for row in clf.predict(queries)])
    mid = len(nearest) // 2
    return float((nearest[mid - 1] + nearest[mid]) / 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_baked_pixels_equals_classifier(tmp_path: Path, channels: int) -> None:
    model, store = _tiny_classifier(tmp_path, channels)
    queries = _queries(model.meta.preprocess.size[0], channels, seed=channels)
    threshold = _threshold(FewShotClassifier.load(store, model), queries)
    report = bake(model, store, tmp_path / "b.onnx", threshold=threshold, input_kind="pixels")
    assert report["input_kind"] == "pixels" and report["verified_images"] > 16
    clf = FewShotClassifier.load(store, model, threshold=threshold)
    sess = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["pixels"]
    labels = json.loads(sess.get_modelmeta().custom_metadata_map["labels"])
    top, accepted = clf.decide(queries, top_k=len(labels))
    assert 0 < sum(accepted) < len(queries)
    for img, row, ok in zip(queries, top, accepted):
        scores, best, acc = sess.run(["scores", "best_index", "accepted"], {"pixels": img[None]})
        assert labels[best[0]] == row[0].label and bool(acc[0]) == ok
        assert max(abs(scores[0, labels.index(p.label)] - p.score) for p in row) <= 1e-5


def test_shipped_model_baked_with_pixels(tmp_path: Path) -> None:
    """models/default.onnx baked with --input pixels answers as the runtime on every shipped example
    image, each decoded to RGBA as an app would (batched by size)."""
    from click.testing import CliRunner

    from edgemeta.cli import main

    model = EmbeddingModel(MODELS / "default.onnx")
    clf = FewShotClassifier(model)
    paths = sorted((MODELS / "examples").glob("*/*/*.png"))
    for folder in sorted({p.parent for p in paths}):
        clf.enroll(folder.name, sorted(folder.glob("*.png"))[:2])
    clf.save(tmp_path / "s.npz")
    out = tmp_path / "b.onnx"
    runner = CliRunner()
    args = ["bake", "--store", tmp_path / "s.npz", "--out", out, "--input", "pixels", "--json"]
    result = runner.invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(main, ["info", str(out), "--json"]).stdout)
    assert info["input"] == "pixels: uint8 [N, H, W, 4] RGBA, any size"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    labels = json.loads(sess.get_modelmeta().custom_metadata_map["labels"])
    top, accepted = FewShotClassifier.load(tmp_path / "s.npz", model).decide(paths, top_k=len(labels))
    decoded = [np.asarray(Image.open(p).convert("RGBA")) for p in paths]
    for shape in sorted({d.shape for d in decoded}):
        idx = [i for i, d in enumerate(decoded) if d.shape == shape]
        scores, best, acc = sess.run(
            ["scores", "best_index", "accepted"], {"pixels": np.stack([decoded[i] for i in idx])}
        )
        for j, i in enumerate(idx):
            assert labels[best[j]] == top[i][0].label and bool(acc[j]) == accepted[i], paths[i]
            assert max(abs(scores[j, labels.index(p.label)] - p.score) for p in top[i]) <= 1e-5


def test_info_shows_what_a_baked_file_takes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgemeta.cli import main

    model, store = _tiny_classifier(tmp_path, 1)
    runner = CliRunner()
    for kind, shown in (
        ("normalized", "images: float32 [N, C, H, W], normalized"),
        ("pixels", "pixels: uint8 [N, H, W, 4] RGBA, any size"),
    ):
        out = tmp_path / f"{kind}.onnx"
        args = ["bake", "--model", model.path, "--store", store, "--out", out] + (
            ["--input", kind] if kind == "pixels" else []
        )
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == 0 and f"{kind} input" in result.output, result.output
        assert json.loads(runner.invoke(main, ["info", str(out), "--json"]).stdout)["input"] == shown
        meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        assert json.loads(meta["edgemeta.classifier"])["input_kind"] == kind


WEB = Path(__file__).resolve().parents[1] / "web"
WASM_SCRIPT = """
import fs from "node:fs";
const ort = await import(process.argv[2]);
const [dir, h, w] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
const sess = await ort.InferenceSession.create(fs.readFileSync(`${dir}/pixels.onnx`), { executionProviders: ["wasm"] });
const px = new Uint8Array(fs.readFileSync(`${dir}/pixels.bin`));
const out = await sess.run({ pixels: new ort.Tensor("uint8", px, [2, h, w, 4]) });
fs.writeFileSync(`${dir}/prepared.bin`, out.prepared.data);
"""


@pytest.mark.parametrize("name", ["gray-shipped", "rgb-letterbox", "gray-crop-lanczos"])
def test_graph_runs_the_same_on_onnxruntime_web(tmp_path: Path, name: str) -> None:
    """onnxruntime-web's WASM build (in Node) computes the uint8 stage bit for bit as Python does."""
    import shutil
    import subprocess

    import onnx

    module = WEB / "node_modules" / "onnxruntime-web" / "dist" / "ort.node.min.mjs"
    if shutil.which("node") is None or not module.is_file():
        pytest.skip("needs Node and web/node_modules (cd web && npm ci)")
    spec = SPECS[name]
    onnx.save(pixel_model(spec), tmp_path / "pixels.onnx")
    rng = np.random.default_rng(11)
    batch = np.stack([rgba_image(rng, 333, 251) for _ in range(2)])
    batch.tofile(tmp_path / "pixels.bin")
    (tmp_path / "run.mjs").write_text(WASM_SCRIPT)
    args = ["node", tmp_path / "run.mjs", module.as_uri(), tmp_path, 333, 251]
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prepared = np.fromfile(tmp_path / "prepared.bin", np.uint8)
    assert np.array_equal(prepared, prepare_uint8(list(batch), spec).ravel())
