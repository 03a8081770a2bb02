"""Hypothesis fuzzing of the data-source parsers (``runtime/datasets.py``'s ``load_source``)."""

from __future__ import annotations

import lzma
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

import fuzz_sources  # noqa: E402


# Known, reported to the owner of runtime/datasets.py: damaged gzip/zip members leak zlib/lzma
# errors, and encrypted or unknown-method zip members leak RuntimeError / NotImplementedError.
# Any other escaping error still fails this test; once fixed it shows as XPASS.
@pytest.mark.xfail(raises=(zlib.error, lzma.LZMAError, NotImplementedError, RuntimeError), strict=False,
                   reason="runtime/datasets.py: decompression errors escape load_source (reported)")
@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fuzz_sources.SOURCES)
def test_data_sources_raise_only_documented_errors(source):
    fuzz_sources.check_source(source)
