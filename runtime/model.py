"""``EmbeddingModel``: an ONNX embedding network plus the metadata that says how to feed it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .binding import PerThreadBindings, SingleImageBinding
from .domain import out_of_domain
from .errors import ModelError
from .metadata import METADATA_KEY, ModelMetadata, classifier_summary, is_baked_classifier
from .preprocess import Normalizer, OneGrayImage, Views, offset_views, prepare_uint8
from .session import DEFAULT_SPIN_US, choose_providers, make_session

MAX_MODEL_BYTES = 512 * 1024 * 1024
DEFAULT_MODEL_NAME = "default.onnx"


def default_model_path() -> Path:
    """Path of the model shipped in the package (``edgemeta/models/default.onnx``)."""
    from edgemeta import models  # a package of data files only: nothing to run on import

    beside = Path(models.__file__).parent / DEFAULT_MODEL_NAME
    if beside.is_file():  # an ordinary install; importlib.resources (about 10 ms to import) is the general way
        return beside
    from importlib import resources

    return Path(str(resources.files("edgemeta.models").joinpath(DEFAULT_MODEL_NAME)))


def _read_model_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"model file is empty: {path}")
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"model file is {size} bytes, over the limit of {MAX_MODEL_BYTES}: {path}")
    return path.read_bytes()


def baked_classifier_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """What a file made by ``edgemeta bake`` holds (``classifier_summary`` plus "fingerprint" and
    "bytes"); None for any other file, which ``EmbeddingModel`` then explains."""
    path = Path(path)
    try:
        data = _read_model_bytes(path)
        session = make_session(data, spin_us=0)
        props = dict(session.get_modelmeta().custom_metadata_map)
    except Exception:
        return None
    if not is_baked_classifier(props):
        return None
    return {"fingerprint": hashlib.sha256(data).hexdigest(), "bytes": len(data), **classifier_summary(props)}


class EmbeddingModel:
    """Loads ``model.onnx``, checks it, and embeds images.

    ``device``: ``cpu`` (default), ``cuda`` or ``auto``; ``providers`` overrides it with an
    explicit onnxruntime provider list. ``threads``: intra-op threads (None: onnxruntime's default).
    ``spin_us``: how long idle worker threads spin for more work before sleeping, in microseconds
    (0: never spin; ``DEFAULT_SPIN_US``; None: onnxruntime's own default, tens of milliseconds).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        spin_us: int | None = DEFAULT_SPIN_US,
    ) -> None:
        self.path = Path(path)
        data = _read_model_bytes(self.path)
        self.fingerprint = hashlib.sha256(data).hexdigest()
        try:
            chosen = choose_providers(device, providers)
            self._session = make_session(data, providers=chosen, threads=threads, spin_us=spin_us)
        except ModelError:
            raise
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"not a valid ONNX model: {self.path} ({str(e).splitlines()[0][:200]})") from None
        try:
            self.meta = self._read_metadata()
            self._check_signature()
        except UnicodeDecodeError:  # onnxruntime decodes names and shapes lazily
            raise ModelError(f"model holds names that are not UTF-8: {self.path}") from None
        self._normalize = Normalizer(self.meta.preprocess)
        self._run_options = ort.RunOptions()
        spec = self.meta.preprocess
        # CPU only: with a GPU provider the bound host buffers would add copies, not save work.
        self._single = PerThreadBindings(
            lambda: SingleImageBinding(
                self._session,
                self.meta.input_name,
                self.meta.output_name,
                (1, spec.channels, spec.size[0], spec.size[1]),
                self.meta.embedding_dim,
            ),
            enabled=chosen == ["CPUExecutionProvider"],
        )
        self._one_gray = OneGrayImage(spec)

    @classmethod
    def default(cls, **kwargs: Any) -> EmbeddingModel:
        """The model shipped with edgemeta."""
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"the default model is missing from this installation ({path})")
        return cls(path, **kwargs)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.meta.to_dict()

    @property
    def session(self) -> ort.InferenceSession:
        """The onnxruntime session that runs the network (for benchmarks and advanced use)."""
        return self._session

    @property
    def provider(self) -> str:
        """The execution provider that runs the model, e.g. ``CPUExecutionProvider``."""
        return self._session.get_providers()[0]

    @property
    def embedding_dim(self) -> int:
        return self.meta.embedding_dim

    def _read_metadata(self) -> ModelMetadata:
        try:
            props = self._session.get_modelmeta().custom_metadata_map
        except Exception as e:  # e.g. metadata that is not UTF-8
            raise ModelError(f"cannot read the metadata of {self.path}: {type(e).__name__}") from None
        if is_baked_classifier(props):
            raise ModelError(
                f"{self.path} is a baked classifier (edgemeta bake), not an embedding model: run it "
                "with onnxruntime directly, or pass the embedding model it was baked from"
            )
        if METADATA_KEY not in props:
            raise ModelError(f"ONNX model has no edgemeta metadata (key {METADATA_KEY!r}): {self.path}")
        return ModelMetadata.from_json(props[METADATA_KEY])

    def _check_signature(self) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        spec = self.meta.preprocess
        if len(inputs) != 1 or inputs[0].name != self.meta.input_name:
            raise ModelError(
                f"model must have one input named {self.meta.input_name!r}, has {[i.name for i in inputs]}"
            )
        shape = inputs[0].shape
        expected = [None, spec.channels, spec.size[0], spec.size[1]]
        if len(shape) != 4 or any(isinstance(s, int) and e is not None and s != e for s, e in zip(shape, expected)):
            raise ModelError(
                f"model input has shape {shape}, expected [N, {spec.channels}, {spec.size[0]}, {spec.size[1]}]"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"model input must be float32, is {inputs[0].type}")
        named = [o for o in outputs if o.name == self.meta.output_name]
        if not named or len(named[0].shape) != 2:
            raise ModelError(
                f"model must have a 2-D output named {self.meta.output_name!r}, has {[(o.name, o.shape) for o in outputs]}"
            )
        dim = named[0].shape[1]
        if isinstance(dim, int) and dim != self.meta.embedding_dim:
            raise ModelError(f"model output has {dim} features but its metadata says {self.meta.embedding_dim}")

    def prepare(self, images: Any) -> np.ndarray:
        """Any accepted image form -> canonical uint8 [N, H, W, C]."""
        return prepare_uint8(images, self.meta.preprocess)

    def out_of_domain(self, images: Any) -> np.ndarray:
        """bool [N]: which images look unlike the model's training images (``domain.py``; all
        False when the file records no domain). Separate from ``embed``: only callers who ask pay."""
        return out_of_domain(self.prepare(images), self.meta.domain)

    def embed(self, images: Any, views: Views | None = None, *, batch_size: int = 512) -> np.ndarray:
        """Any accepted image form -> float32 [N, D] embeddings.

        ``views``: None, each image as it is; or (dy, dx) pixel offsets, each image embedded as
        the mean over its copies shifted by them (``preprocess.query_offsets(n)``: a query's
        test-time views; ``preprocess.support_offsets(r)``: how enrolled images are embedded).
        ``batch_size``: images times views per network call.
        """
        if _plain(views) and self._one_gray.accepts(images):
            bound = self._single.get()
            if bound is not None:  # one small gray image: a table lookup into bound buffers
                self._one_gray.normalize_into(images, bound.flat_input)
                return bound.run().copy()
        return self.embed_prepared(self.prepare(images), views, batch_size=batch_size)

    def embed_prepared(self, batch: np.ndarray, views: Views | None = None, *, batch_size: int = 512) -> np.ndarray:
        """uint8 [N, H, W, C] (from ``prepare``) -> float32 [N, D], ``views`` as in ``embed``."""
        if views is not None and not _plain(views):
            return mean_over_views(self._embed_plain, batch, views, batch_size)
        return self._embed_plain(batch)

    def _embed_plain(self, batch: np.ndarray) -> np.ndarray:
        bound = self._single.get() if batch.shape[0] == 1 else None
        if bound is not None:
            self._normalize(batch, out=bound.input)
            return bound.run().copy()
        return self.run_input(self._normalize(batch))

    def run_input(self, x: np.ndarray) -> np.ndarray:
        """Normalized float32 [N, C, H, W] -> float32 [N, D]: the bare network call."""
        out = self._session.run([self.meta.output_name], {self.meta.input_name: x}, self._run_options)[0]
        if out.shape != (x.shape[0], self.meta.embedding_dim):
            raise ModelError(f"model returned shape {out.shape}, expected ({x.shape[0]}, {self.meta.embedding_dim})")
        return out

    def __repr__(self) -> str:
        return f"EmbeddingModel({str(self.path)!r}, provider={self.provider!r}, dim={self.embedding_dim})"


def _plain(views: Views | None) -> bool:
    return views is None or list(views) == [(0, 0)]


def mean_over_views(
    embed: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, views: Views, batch_size: int = 512
) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, D]: the mean over ``offset_views`` of each image of
    ``embed`` (uint8 [M, H, W, C] -> float32 [M, D]); one ``embed`` call per chunk of images, all
    views of the chunk's images together (at most ``batch_size`` rows). Export verifies with it too."""
    views = list(views)
    if len(batch) == 0:
        return embed(batch).astype(np.float32)
    step = max(1, batch_size // len(views))
    parts = []
    for start in range(0, len(batch), step):
        shifted = offset_views(batch[start : start + step], views)  # [V, n, H, W, C]
        emb = embed(shifted.reshape(-1, *shifted.shape[2:]))  # [V * n, D]
        parts.append(emb.reshape(shifted.shape[0], -1, emb.shape[1]).mean(axis=0))
    return np.concatenate(parts).astype(np.float32)
