"""Manifest schema: validation, versioning, atomic update."""

from __future__ import annotations

import copy
import json

import pytest

from segdeploy.errors import ArtifactError
from segdeploy.manifest import SCHEMA_VERSION, read_manifest, update_manifest, validate_manifest, write_manifest

DOC = {
    "schema": "segdeploy.manifest",
    "schema_version": SCHEMA_VERSION,
    "segdeploy_version": "0.1.0",
    "source": {"format": "pt2", "sha256": "ab"},
    "model": {"in_channels": 3, "num_classes": 2, "spatial_multiple": 16, "output_selection": "tensor"},
    "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                "profile": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [2, 3, 128, 128], "spatial_multiple": 16}}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2, "height", "width"]}],
    "preprocess": {"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0, "channel_order": "RGB", "resize": "pad"},
    "onnx": {"file": "model.onnx", "opset": 18, "exporter": "torchscript", "sha256": "cd"},
    "rewrites": [],
    "verification": {"passed": True, "shapes": []},
    "versions": {},
}


def test_round_trip_and_update(tmp_path):
    p = tmp_path / "manifest.json"
    write_manifest(p, DOC)
    assert read_manifest(tmp_path) == DOC
    new = update_manifest(p, "precision", {"int8": {"method": "entropy"}})
    assert read_manifest(p)["precision"] == new["precision"]
    assert not [f for f in tmp_path.iterdir() if f.name != "manifest.json"]  # no temp files left


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("onnx"), "lacks required key 'onnx'"),
        (lambda d: d["model"].pop("num_classes"), "model.num_classes"),
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this segdeploy"),
        (lambda d: d.update(schema="other"), "not a segdeploy manifest"),
        (lambda d: d["inputs"][0].pop("profile"), "shape profile"),
        (lambda d: d.update(inputs="x"), "wrong type"),
    ],
)
def test_invalid_documents(mutate, match):
    d = copy.deepcopy(DOC)
    mutate(d)
    with pytest.raises(ArtifactError, match=match):
        validate_manifest(d)


def test_corrupt_and_missing_files(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        read_manifest(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(bad)
    good = tmp_path / "manifest.json"
    write_manifest(good, DOC)
    before = good.read_bytes()
    broken = copy.deepcopy(DOC)
    broken.pop("onnx")
    with pytest.raises(ArtifactError):
        write_manifest(good, broken)
    assert good.read_bytes() == before  # a refused write never touches the good file
    assert json.loads(before) == DOC
