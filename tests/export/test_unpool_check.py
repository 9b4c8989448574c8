"""Overlapping max-pool windows feeding max-unpool (segdeploy/export/unpool_check.py): said before tracing in one line
(and recorded), named as the cause when no exporter verifies; non-overlapping pools and duplicates that carry equal
values raise nothing."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from segdeploy.cli import main
from segdeploy.export.unpool_check import UnpoolRecorder, conflicting_positions
from segdeploy.zoo.segnet import segnet


def test_conflicts_count_positions_written_twice_with_different_values():
    values = torch.tensor([[[[1.0, 2.0, 3.0, 3.0]]]])
    indices = torch.tensor([[[[0, 0, 5, 5]]]])  # position 0: 1 vs 2 (conflict); position 5: 3 vs 3 (harmless)
    assert conflicting_positions(values, indices) == 1
    # the same index in two different planes is two positions, not a duplicate
    assert conflicting_positions(torch.tensor([[[[1.0]], [[2.0]]]]), torch.tensor([[[[0]], [[0]]]])) == 0


def test_recorder_sees_the_pool_parameters_and_the_conflicting_unpool():
    with torch.no_grad(), UnpoolRecorder() as rec:
        segnet(4, pool_kernel=3).eval()(torch.randn(1, 3, 32, 32))
    assert {str(p) for p in rec.pools} == {"kernel 3x3 stride 2x2"} and rec.conflicts
    line = rec.finding()
    assert "kernel 3x3 stride 2x2" in line and "kernel_size == stride" in line and "TensorRT plugin" in line
    assert "\n" not in line


def test_non_overlapping_pools_and_equal_valued_duplicates_pass():
    with torch.no_grad(), UnpoolRecorder() as rec:
        segnet(4).eval()(torch.randn(1, 3, 32, 32))
    assert rec.pools and not rec.conflicts and rec.finding() is None
    x = torch.randn(1, 2, 16, 16)
    with UnpoolRecorder() as rec:  # unpooling the pooled tensor itself: duplicates carry the same value
        p, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        F.max_unpool2d(p, i, 3, 2, 1, output_size=(16, 16))
    assert rec.pools[0].overlapping and rec.finding() is None


SEGNET3 = ["--model", "segdeploy.zoo.segnet:segnet", "--model-arg", "pool_kernel=3", "--model-arg", "num_classes=4",
           "--shape", "1x3x64x64", "--max-batch", "2"]


def test_failed_export_names_the_overlapping_unpool_as_the_cause(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", *SEGNET3, "--exporter", "torchscript", "--out", str(out)])  # the tracer refuses unpool
    err = capsys.readouterr().err
    assert code == 1 and not out.exists() and "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: max-pool windows overlap (kernel 3x3 stride 2x2)")
    assert "kernel_size == stride" in lines[0] and "no exporter could export the model (torchscript:" in lines[0]
    # said once before any exporter ran
    warn = err.index("warning: max-pool windows overlap")
    assert warn < err.index("export with the torchscript exporter")


@pytest.mark.slow
def test_overlapping_segnet_exports_exact_on_the_cpu_with_the_warning_recorded(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", *SEGNET3, "--exporter", "dynamo", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = json.loads(captured.out)["stages"]["export"]
    # ONNX Runtime's CPU ScatterND writes in order, like PyTorch's CPU kernel: the value check passes exactly
    assert res["verification"]["passed"] and res["verification"]["worst_max_abs_err"] < 1e-4
    man = json.loads((out / "manifest.json").read_text())
    assert any(n.startswith("warning: max-pool windows overlap") for n in man["model"]["probe_notes"])
