"""What export writes beside the network: accuracy on held-out classes (and which), one network id
for the fp32 and int8 files with the int8 file's measured agreement, and the domain statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import needs_torch
from test_export import SPEC, make_checkpoint

pytestmark = [needs_torch, pytest.mark.torch]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A checkpoint whose run trained on a 12-class folder tree (written beside it)."""
    from PIL import Image

    from edgemeta.export.validation_data import synthetic_images
    from edgemeta.runtime.preprocess import PreprocessSpec

    root = tmp_path_factory.mktemp("run")
    images, targets = synthetic_images(PreprocessSpec.from_dict(SPEC), classes=12, per_class=12, seed=5)
    for i, (img, t) in enumerate(zip(images, targets)):
        folder = root / "data" / f"class{t:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(folder / f"{i}.png")
    return make_checkpoint(root / "c.pt", data=str(root / "data"))


@pytest.fixture(scope="module")
def fp32(run):
    return _export(run, run.parent / "m.onnx")


def _export(run: Path, out: Path, **opts):
    from edgemeta.export.pipeline import ExportOptions, run_export
    from edgemeta.runtime import EmbeddingModel

    run_export(run, ExportOptions(out=out, exporter="legacy", episodes=20, **opts))
    return EmbeddingModel(out)


def test_accuracy_is_measured_on_the_classes_training_held_out(run, fp32):
    from edgemeta.lab.datasets import held_out_classes, load_source
    from edgemeta.runtime.preprocess import PreprocessSpec

    meta = fp32.meta
    check = meta.accuracy["export_check"]
    fs = load_source(run.parent / "data", PreprocessSpec.from_dict(SPEC))
    held = held_out_classes(fs, 4, 5)  # what the trainer validated on (config: val_groups 4, test_way 5)
    assert (
        check["held_out"] == "classes held out from training" and check["classes"] == int(held.sum()) < fs.num_classes
    )
    assert check["images"] == int(np.isin(fs.targets, np.flatnonzero(held)).sum())
    assert {"accuracy", "ci95", "way", "shot", "episodes"} <= set(check)


def test_synthetic_stand_ins_are_not_called_held_out():
    from edgemeta.export.validation_data import load_validation
    from edgemeta.runtime.preprocess import PreprocessSpec

    val = load_validation({"data": "/nonexistent"}, None, None, PreprocessSpec.from_dict(SPEC))
    assert val.synthetic and val.describe()["held_out"] is None  # synthetic stand-ins are held out from nothing


def test_fp32_and_int8_name_one_network_and_share_stores_by_the_rule(run, fp32, tmp_path):
    from edgemeta.export.checkpoint import load_checkpoint
    from edgemeta.runtime import FewShotClassifier
    from edgemeta.runtime.errors import StoreError
    from edgemeta.runtime.metadata import MIN_STORE_AGREEMENT

    int8 = _export(run, tmp_path / "q.onnx", int8=True, force=True)
    assert fp32.meta.network == {"id": load_checkpoint(run).network_id, "reference": True}
    assert int8.meta.network["id"] == fp32.meta.network["id"] and int8.meta.network["reference"] is False
    agreement = int8.meta.network["agreement"]
    assert 0.0 <= agreement["top1"] <= 1.0 and agreement["decisions"] > 0 and agreement["episodes"] == 20
    assert agreement["held_out"] == "classes held out from training"
    clf = FewShotClassifier(fp32)
    clf.enroll("a", np.zeros((2, 28, 28), np.uint8))
    clf.save(tmp_path / "s.npz")
    if agreement["top1"] >= MIN_STORE_AGREEMENT:
        assert FewShotClassifier.load(tmp_path / "s.npz", int8).labels == ["a"]
    else:
        with pytest.raises(StoreError, match="re-enroll"):
            FewShotClassifier.load(tmp_path / "s.npz", int8)


def test_domain_statistics_come_from_real_images_only(fp32, tmp_path):
    real = fp32.meta.domain
    assert set(real["features"]) == {"dark_fraction", "midtone_fraction"} and real["images"] > 0
    synthetic = _export(make_checkpoint(tmp_path / "c.pt"), tmp_path / "s.onnx").meta.domain
    assert synthetic == {}
