"""Hypothesis fuzzing of the data-source parsers (``lab/datasets.py``'s ``load_source``)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

import fuzz_sources  # noqa: E402


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fuzz_sources.SOURCES)
def test_data_sources_raise_only_documented_errors(source):
    fuzz_sources.check_source(source)
