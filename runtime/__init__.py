"""edgemeta's torch-free runtime: numpy + onnxruntime (+ Pillow for decoding images)."""

from .classifier import FewShotClassifier, Prediction
from .errors import DataError, EdgemetaError, ImageError, ModelError, StoreError
from .model import EmbeddingModel, default_model_path
from .preprocess import PreprocessSpec, normalize, prepare_uint8

__all__ = [
    "DataError",
    "EdgemetaError",
    "ImageError",
    "ModelError",
    "StoreError",
    "EmbeddingModel",
    "FewShotClassifier",
    "Prediction",
    "default_model_path",
    "PreprocessSpec",
    "normalize",
    "prepare_uint8",
]
