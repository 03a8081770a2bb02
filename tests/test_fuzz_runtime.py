"""Hypothesis fuzzing of every runtime parser: only ``EdgemetaError`` subclasses may escape.

``stress/fuzz_all.py`` runs the same targets with many more examples.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

import fuzz_targets as ft  # noqa: E402

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(ft.IMAGE_BYTES)
def test_image_file_bytes(args):
    ft.check_image_bytes(args)


@FUZZ
@given(ft.ARRAYS)
def test_image_arrays_of_any_dtype_and_shape(args):
    ft.check_array(args)


@FUZZ
@given(ft.PIL_IMAGES)
def test_pil_images_of_any_mode(args):
    ft.check_pil(args)


@FUZZ
@given(ft.STORE_BYTES)
def test_store_loader(data):
    ft.check_store(data)


@FUZZ
@given(ft.METADATA_TEXT)
def test_model_metadata_parser(text):
    ft.check_metadata(text)


@settings(FUZZ, max_examples=100)
@given(ft.ONNX_BYTES)
def test_mutated_onnx_models(data):
    ft.check_onnx(data)


@pytest.mark.parametrize(
    "text",
    [
        '{"format_version": 1, "preprocess": {}, "embedding_dim": Infinity}',
        '{"format_version": 1, "preprocess": {"size": [1e400, 2]}, "embedding_dim": 1}',
        '{"format_version": 1, "preprocess": {}, "embedding_dim": 1, "threshold": 1' + "0" * 400 + "}",
    ],
)
def test_metadata_numbers_out_of_range_are_model_errors(text):
    """Found by fuzzing: these raised OverflowError."""
    from edgemeta.runtime import ModelError
    from edgemeta.runtime.metadata import ModelMetadata

    with pytest.raises(ModelError):
        ModelMetadata.from_json(text)


def test_preprocess_size_beyond_the_pixel_limit_is_refused():
    from edgemeta.runtime import ModelError, PreprocessSpec

    with pytest.raises(ModelError, match="over the limit"):
        PreprocessSpec(size=(100_000, 100_000))
