"""The export matrix: every row exports with dynamic batch/height/width (or a documented static axis)
and verifies against PyTorch with ONNX Runtime at min, opt, the max (batch and H/W apart when both are dynamic)
and an irregular shape."""

from __future__ import annotations

import pytest

from segdeploy.export import ExportOptions
from segdeploy.pipeline import export_model
from segdeploy.export.matrix import ROWS
from segdeploy.exportdir import ExportDir

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("torchvision")


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_matrix_row_exports_and_verifies(row, tmp_path):
    res = export_model(
        row.build(),
        tmp_path,
        ExportOptions(shape=row.shape, min_shape=row.min_shape, max_shape=row.max_shape, max_batch=2),
    )
    man = ExportDir.open(tmp_path).manifest
    ver = man["verification"]
    assert ver["passed"]
    assert len(ver["shapes"]) >= 3
    labels = {s["label"] for s in ver["shapes"]}
    # the max corner, or (batch and H/W both dynamic) the max batch and the max H/W apart
    assert {"min", "opt"} <= labels and ("max" in labels or {"max-batch", "max-hw"} <= labels)
    assert ver["corner_verified"] == ("max" in labels)
    assert all(s["decisive_disagreements"] == 0 and s["max_abs_err"] <= s["tolerance"] for s in ver["shapes"])
    expected_dynamic = [a for a in ("batch", "height", "width") if a not in row.expect_static]
    assert man["inputs"][0]["profile"]["dynamic_axes"] == expected_dynamic
    assert sorted(s["axis"] for s in man["static_axes"]) == sorted(row.expect_static)
    assert all(s["reason"] for s in man["static_axes"])
    assert man["onnx"]["exporter"] == res.exporter
    # the attempts tell the true story: failures (with a reason) up to the exporter used, which verified, then untried
    attempts = man["onnx"]["exporter_attempts"]
    used = [a["exporter"] for a in attempts].index(res.exporter)
    assert attempts[used]["outcome"] == "verified"
    assert all(a["outcome"] in ("export failed", "verification failed") and a["reason"] for a in attempts[:used])
    assert all(a["outcome"] == "not tried" for a in attempts[used + 1:])
