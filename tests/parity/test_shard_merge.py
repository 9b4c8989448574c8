"""--shard I/N partial results merge exactly into the unsharded result."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from parity_helpers import make_dataset

from segdeploy.errors import ArtifactError
from segdeploy.parity.check import CheckOptions, run_check
from segdeploy.parity.gate import GateOptions
from segdeploy.parity.shard import merge_reports


@pytest.fixture(scope="module")
def pert_onnx(tiny_model, tmp_path_factory):
    import torch
    from parity_helpers import export_onnx

    m = copy.deepcopy(tiny_model)
    with torch.no_grad():
        m.b.bias[2] += 0.2
    return export_onnx(m, tmp_path_factory.mktemp("p") / "p.onnx")


@pytest.mark.parametrize("labelled", [True, False])
def test_merge_equals_unsharded(tiny_model, pert_onnx, tmp_path, labelled):
    images, masks = make_dataset(tmp_path / "d", n=11, masks=labelled)
    gate = GateOptions(max_miou_drop=0.5, min_agreement=95.0)
    whole = run_check(tiny_model, pert_onnx, images, masks, options=CheckOptions(worst_k=4, gate=gate)).report
    parts = [
        run_check(tiny_model, pert_onnx, images, masks, options=CheckOptions(worst_k=4, gate=gate, shard=(i, 3))).report
        for i in (2, 0, 1)
    ]
    assert all(p["partial"] and not p["gate"]["evaluated"] for p in parts)
    assert sum(p["dataset"]["num_entries"] for p in parts) == 11
    merged = merge_reports(parts)
    for key in ("confusion", "metrics", "worst_images", "errors", "nonfinite", "classes", "mode", "gate"):
        assert merged[key] == whole[key], key
    assert merged["dataset"]["num_evaluated"] == 11 and merged["partial"] is False
    for which in ("reference", "candidate", "agreement"):
        if whole["confusion"][which] is not None:
            assert np.asarray(merged["confusion"][which]["matrix"]).sum() > 0


def test_merge_refuses_incomplete_or_mixed(tiny_model, tiny_onnx, pert_onnx, tmp_path):
    images, masks = make_dataset(tmp_path / "d", n=4)
    p0, p1 = (run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(shard=(i, 2))).report for i in (0, 1))
    with pytest.raises(ArtifactError, match=r"missing \[1\]"):
        merge_reports([p0])
    with pytest.raises(ArtifactError, match=r"duplicated \[0\]"):
        merge_reports([p0, p0])
    other = run_check(tiny_model, pert_onnx, images, masks, options=CheckOptions(shard=(1, 2))).report
    with pytest.raises(ArtifactError, match="candidate.sha256"):
        merge_reports([p0, other])
    whole = run_check(tiny_model, tiny_onnx, images, masks).report
    with pytest.raises(ArtifactError, match="not a --shard result"):
        merge_reports([whole])
    merged = merge_reports([p1, p0], gate=GateOptions(min_agreement=99.0))
    assert merged["gate"]["evaluated"] and merged["gate"]["passed"]


def test_merge_refuses_shards_of_two_datasets(tiny_model, tiny_onnx, tmp_path):
    a_images, a_masks = make_dataset(tmp_path / "a", n=4, seed=0)
    b_images, b_masks = make_dataset(tmp_path / "b", n=4, seed=1)  # same size, same stems, other pixels
    p0 = run_check(tiny_model, tiny_onnx, a_images, a_masks, options=CheckOptions(shard=(0, 2))).report
    p1 = run_check(tiny_model, tiny_onnx, b_images, b_masks, options=CheckOptions(shard=(1, 2))).report
    assert p0["dataset"]["fingerprint"] != p1["dataset"]["fingerprint"]
    with pytest.raises(ArtifactError, match=r"b1.json \(shard 1/2\) and a0.json \(shard 0/2\) were run on different "
                                            "datasets"):
        merge_reports([p0, p1], sources=["a0.json", "b1.json"])
    same = run_check(tiny_model, tiny_onnx, a_images, a_masks, options=CheckOptions(shard=(1, 2))).report
    assert merge_reports([p0, same])["dataset"]["fingerprint"] == p0["dataset"]["fingerprint"]
