"""``EmbeddingModel``: an ONNX embedding network plus the metadata that says how to feed it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from .binding import PerThreadBindings, SingleImageBinding
from .domain import out_of_domain
from .errors import ModelError
from .metadata import METADATA_KEY, ModelMetadata, classifier_summary, is_baked_classifier
from .preprocess import (QUERY_VIEW_OFFSETS, OneGrayImage, _normalize_with, check_query_views, check_support_shift,
                         normalize_constants, offset_views, prepare_uint8, shift_offsets)

MAX_MODEL_BYTES = 512 * 1024 * 1024
DEFAULT_MODEL_NAME = "default.onnx"
DEVICES = ("cpu", "cuda", "auto")
# onnxruntime's own default keeps each session's worker threads spinning after a call: about 40 ms
# of CPU burned per call on the project's host, and a core taken from whatever runs next (another
# session ran 1.7x slower in that window). 100 µs still covers the gaps inside a call and between
# back-to-back calls, so tight loops keep their speed (benchmarks/README.md).
DEFAULT_SPIN_US = 100


def default_model_path() -> Path:
    """Path of the model shipped in the package (``edgemeta/models/default.onnx``)."""
    from edgemeta import models  # a package of data files only: nothing to run on import

    beside = Path(models.__file__).parent / DEFAULT_MODEL_NAME
    if beside.is_file():  # an ordinary install; importlib.resources (about 10 ms to import) is the general way
        return beside
    from importlib import resources

    return Path(str(resources.files("edgemeta.models").joinpath(DEFAULT_MODEL_NAME)))


def _choose_providers(device: str, providers: Sequence[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if providers is not None:
        missing = [p for p in providers if p not in available]
        if missing:
            raise ModelError(f"execution provider(s) {missing} not available; this onnxruntime has {available}")
        return list(providers)
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; one of {DEVICES}")
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise ModelError("device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _session_options(threads: int | None, spin_us: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        if not _is_int(threads) or threads < 1:
            raise ModelError(f"threads must be an integer of at least 1, got {threads!r}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spin_us is None:
        return options
    if not _is_int(spin_us) or spin_us < 0:
        raise ModelError(f"spin_us must be an integer of 0 or more, got {spin_us!r}")
    if spin_us == 0:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    else:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
    return options


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
        session = ort.InferenceSession(data, _session_options(None, 0), providers=["CPUExecutionProvider"])
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

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu",
                 providers: Sequence[str] | None = None, threads: int | None = None,
                 spin_us: int | None = DEFAULT_SPIN_US) -> None:
        self.path = Path(path)
        data = _read_model_bytes(self.path)
        self.fingerprint = hashlib.sha256(data).hexdigest()
        options = _session_options(threads, spin_us)
        try:
            chosen = _choose_providers(device, providers)
            # onnxruntime's fallback retries on CPU and prints to stdout; a CPU-only list has nothing to fall back to.
            fallback = int(chosen != ["CPUExecutionProvider"])
            self._session = ort.InferenceSession(data, options, providers=chosen, enable_fallback=fallback)
        except ModelError:
            raise
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"not a valid ONNX model: {self.path} ({str(e).splitlines()[0][:200]})") from None
        try:
            self.meta = self._read_metadata()
            self._check_signature()
        except UnicodeDecodeError:  # onnxruntime decodes names and shapes lazily
            raise ModelError(f"model holds names that are not UTF-8: {self.path}") from None
        self._scale, self._offset = normalize_constants(self.meta.preprocess)
        self._run_options = ort.RunOptions()
        spec = self.meta.preprocess
        # CPU only: with a GPU provider the bound host buffers would add copies, not save work.
        self._single = PerThreadBindings(lambda: SingleImageBinding(
            self._session, self.meta.input_name, self.meta.output_name,
            (1, spec.channels, spec.size[0], spec.size[1]), self.meta.embedding_dim),
            enabled=chosen == ["CPUExecutionProvider"])
        self._one_gray = OneGrayImage(spec)

    @classmethod
    def default(cls, **kwargs: Any) -> "EmbeddingModel":
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
            raise ModelError(f"{self.path} is a baked classifier (edgemeta bake), not an embedding model: run it "
                             "with onnxruntime directly, or pass the embedding model it was baked from")
        if METADATA_KEY not in props:
            raise ModelError(f"ONNX model has no edgemeta metadata (key {METADATA_KEY!r}): {self.path}")
        return ModelMetadata.from_json(props[METADATA_KEY])

    def _check_signature(self) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        spec = self.meta.preprocess
        if len(inputs) != 1 or inputs[0].name != self.meta.input_name:
            raise ModelError(f"model must have one input named {self.meta.input_name!r}, has {[i.name for i in inputs]}")
        shape = inputs[0].shape
        expected = [None, spec.channels, spec.size[0], spec.size[1]]
        if len(shape) != 4 or any(isinstance(s, int) and e is not None and s != e for s, e in zip(shape, expected)):
            raise ModelError(f"model input has shape {shape}, expected [N, {spec.channels}, {spec.size[0]}, {spec.size[1]}]")
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"model input must be float32, is {inputs[0].type}")
        named = [o for o in outputs if o.name == self.meta.output_name]
        if not named or len(named[0].shape) != 2:
            raise ModelError(f"model must have a 2-D output named {self.meta.output_name!r}, has {[(o.name, o.shape) for o in outputs]}")
        dim = named[0].shape[1]
        if isinstance(dim, int) and dim != self.meta.embedding_dim:
            raise ModelError(f"model output has {dim} features but its metadata says {self.meta.embedding_dim}")

    def prepare(self, images: Any) -> np.ndarray:
        """Any accepted image form -> canonical uint8 [N, H, W, C]."""
        return prepare_uint8(images, self.meta.preprocess)

    def out_of_domain(self, images: Any) -> np.ndarray:
        """bool [N]: which images look unlike the model's training images (``domain.py``; all
        False when the file records no domain). Separate from ``embed``: only callers who ask pay."""
        return self.out_of_domain_prepared(self.prepare(images))

    def out_of_domain_prepared(self, batch: np.ndarray) -> np.ndarray:
        """``out_of_domain`` for uint8 [N, H, W, C] from ``prepare``."""
        return out_of_domain(batch, self.meta.domain)

    def run_single_bound(self, images: Any) -> SingleImageBinding | None:
        """For one uint8 grayscale image at the model's size (see ``OneGrayImage``): run it on this
        thread's bound buffers and return the binding (read ``output``, float32 [1, D], before the
        thread's next call). None for every other input: use ``embed``."""
        if not self._one_gray.accepts(images):
            return None
        bound = self._single.get()
        if bound is not None:
            self._one_gray.normalize_into(images, bound.flat_input)
            bound.run()
        return bound

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] (from ``prepare``) -> float32 [N, D]."""
        bound = self._single.get() if batch.shape[0] == 1 else None
        if bound is not None:
            _normalize_with(batch, self._scale, self._offset, out=bound.input)
            return bound.run().copy()
        return self.run_input(_normalize_with(batch, self._scale, self._offset))

    def run_input(self, x: np.ndarray) -> np.ndarray:
        """Normalized float32 [N, C, H, W] -> float32 [N, D]: the bare network call."""
        out = self._session.run([self.meta.output_name], {self.meta.input_name: x}, self._run_options)[0]
        if out.shape != (x.shape[0], self.meta.embedding_dim):
            raise ModelError(f"model returned shape {out.shape}, expected ({x.shape[0]}, {self.meta.embedding_dim})")
        return out

    def embed(self, images: Any) -> np.ndarray:
        """Any accepted image form -> float32 [N, D] embeddings."""
        bound = self.run_single_bound(images)
        if bound is not None:
            return bound.output.copy()
        return self.embed_prepared(self.prepare(images))

    def embed_support(self, images: Any, shift: int | None = None) -> np.ndarray:
        """Any accepted image form -> float32 [N, D]: each image embedded as the mean over its
        ``shifted_views`` (``shift`` pixels, default the model's ``support_shift``), the way
        enrolled (support) images are; queries go through ``embed``."""
        return self.embed_prepared_support(self.prepare(images), shift)

    def embed_prepared_support(self, batch: np.ndarray, shift: int | None = None,
                               batch_size: int = 512) -> np.ndarray:
        """uint8 [N, H, W, C] (from ``prepare``) -> float32 [N, D], as ``embed_support``."""
        shift = self.meta.support_shift if shift is None else shift
        if shift == 0:
            return self.embed_prepared(batch)
        return self.embed_prepared_views(batch, shift_offsets(check_support_shift(shift)), batch_size)

    def embed_query(self, images: Any, views: int = 1) -> np.ndarray:
        """Any accepted image form -> float32 [N, D]: each query embedded as the mean over
        ``views`` shifted copies (``QUERY_VIEW_OFFSETS``; 1: as it is, the same as ``embed``)."""
        if check_query_views(views) == 1:
            return self.embed(images)
        return self.embed_prepared_views(self.prepare(images), QUERY_VIEW_OFFSETS[views])

    def embed_prepared_views(self, batch: np.ndarray, offsets: list[tuple[int, int]],
                             batch_size: int = 512) -> np.ndarray:
        """uint8 [N, H, W, C] -> float32 [N, D]: the mean embedding over ``offset_views`` of each
        image (one network call per chunk, all views of the chunk's images together)."""
        out = np.zeros((len(batch), self.embedding_dim), dtype=np.float64)
        step = max(1, batch_size // len(offsets))
        for start in range(0, len(batch), step):
            views = offset_views(batch[start:start + step], offsets)        # [V, n, H, W, C]
            emb = self.embed_prepared(views.reshape(-1, *views.shape[2:]))  # [V * n, D]
            out[start:start + step] = emb.reshape(views.shape[0], -1, emb.shape[1]).mean(axis=0)
        return out.astype(np.float32)

    def __repr__(self) -> str:
        return f"EmbeddingModel({str(self.path)!r}, provider={self.provider!r}, dim={self.embedding_dim})"
