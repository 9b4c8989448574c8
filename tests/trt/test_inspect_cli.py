"""`segdeploy inspect ENGINE [--json]`: plan header, manifest entry, installed TensorRT (other artifacts: tests/inspect)."""

from __future__ import annotations

import copy
import hashlib
import json
import sys

import pytest
from trt_helpers import plan_bytes

from segdeploy.cli import main
from segdeploy.exportdir import Transaction
from segdeploy.manifest import SCHEMA_VERSION

DOC = {
    "schema": "segdeploy.manifest",
    "schema_version": SCHEMA_VERSION,
    "segdeploy_version": "0.1.0",
    "source": {"format": "pt2", "sha256": "ab"},
    "model": {"in_channels": 3, "num_classes": 2, "class_names": [], "spatial_multiple": 16,
              "output_selection": "tensor"},
    "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                "profile": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [2, 3, 128, 128],
                            "spatial_multiple": 16}}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2, "height", "width"]}],
    "preprocess": {"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0, "channel_order": "RGB", "resize": "pad"},
    "onnx": {"file": "model.onnx", "opset": 18, "exporter": "torchscript", "sha256": "cd"},
    "rewrites": [],
    "verification": {"passed": True, "shapes": []},
    "versions": {},
}


@pytest.fixture()
def export_with_engine(tmp_path):
    out = tmp_path / "exp"
    plan = plan_bytes((10, 3, 0, 26), size=1 << 16)
    doc = copy.deepcopy(DOC)
    doc["engines"] = [{
        "file": "model.fp16.engine", "sha256": hashlib.sha256(plan).hexdigest(), "bytes": len(plan),
        "precision": "fp16", "source_onnx": "model.fp16.onnx",
        "tensorrt": {"version": "10.3.0.26", "plan_header": [10, 3, 0, 26]},
        "gpu": {"name": "Orin (nvgpu)", "compute_capability": "8.7"},
        "profile": DOC["inputs"][0]["profile"], "plugins": None,
    }]
    with Transaction(out, fresh=True, command="test") as txn:
        txn.write_bytes("model.onnx", b"onnx", "onnx")
        txn.write_bytes("model.fp16.onnx", b"onnx16", "onnx-fp16", derived_from=("model.onnx",))
        txn.write_bytes("model.fp16.engine", plan, "engine", derived_from=("model.fp16.onnx",))
        doc["precision"] = {"source_onnx": "model.onnx", "fp16": {"file": "model.fp16.onnx"}}
        txn.set_manifest(doc)
        txn.commit()
    return out / "model.fp16.engine", plan


def hide_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorrt" else real(n, *a))


def test_inspect_engine_with_manifest(export_with_engine, capsys, monkeypatch):
    hide_tensorrt(monkeypatch)
    path, plan = export_with_engine
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model.fp16.engine: TensorRT engine (plan), built with TensorRT 10.3.0.26" in out
    assert f"sha256:   {hashlib.sha256(plan).hexdigest()}" in out and "(65536 bytes)" in out
    assert "precision fp16 from model.fp16.onnx, TensorRT 10.3.0.26, GPU Orin (nvgpu) (sm 8.7)" in out
    assert "sha256 matches the manifest" in out and "installed TensorRT: none" in out
    assert main(["inspect", str(path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["schema"] == "segdeploy.result" and res["command"] == "inspect" and res["ok"]
    rep = res["stages"]["inspect"]
    assert rep["tensorrt_version"] == "10.3.0.26" and rep["plan_header"] == [10, 3, 0, 26]
    assert rep["manifest"]["listed"] and rep["manifest"]["sha256_matches"] and rep["installed_tensorrt"] is None


def test_inspect_replaced_engine_and_no_manifest(export_with_engine, tmp_path, capsys, monkeypatch):
    hide_tensorrt(monkeypatch)
    path, _ = export_with_engine
    path.write_bytes(plan_bytes((10, 3, 0, 26), size=999))  # replaced after the build
    assert main(["inspect", str(path)]) == 0
    assert "sha256 DIFFERS from the manifest" in capsys.readouterr().out
    lone = tmp_path / "lone.plan"
    lone.write_bytes(plan_bytes((11, 1, 0, 7)))
    assert main(["inspect", str(lone)]) == 0
    out = capsys.readouterr().out
    assert "built with TensorRT 11.1.0.7" in out and "manifest: none beside it" in out


def test_inspect_reports_whether_the_installed_tensorrt_can_load_it(tmp_path, capsys, monkeypatch):
    from standin import make_trt_module

    fake = make_trt_module("10.16", version_string="10.16.1.11")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "tensorrt" else real(n, *a))
    p = tmp_path / "m.engine"
    p.write_bytes(plan_bytes((10, 3, 0, 26)))
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "installed TensorRT: 10.16.1.11 (cannot load it): m.engine was built with TensorRT 10.3.0.26" in out
    p.write_bytes(plan_bytes((10, 16, 1, 11)))
    assert main(["inspect", str(p)]) == 0
    assert "installed TensorRT: 10.16.1.11 (can load it)" in capsys.readouterr().out


def test_inspect_other_files(tmp_path, onnx_dir, capsys):
    assert main(["inspect", str(onnx_dir / "model.onnx")]) == 0  # an ONNX is inspected (tests/inspect)
    assert "model.onnx: ONNX model" in capsys.readouterr().out
    empty = tmp_path / "e.engine"
    empty.write_bytes(b"")
    assert main(["inspect", str(empty), "--json"]) == 1
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert res["exit_code"] == 1 and res["error"]["type"] == "NotInspectable"
    assert res["stages"]["inspect"]["kind"] == "empty" and "e.engine is empty" in captured.err
    assert captured.err.count("\n") == 1
    assert main(["inspect", str(tmp_path / "missing.engine")]) == 1
    assert "missing.engine not found; check the path" in capsys.readouterr().err


def test_inspect_the_export_directory_of_an_engine(export_with_engine, capsys, monkeypatch):
    hide_tensorrt(monkeypatch)
    path, _ = export_with_engine
    assert main(["inspect", str(path.parent)]) == 0
    out = capsys.readouterr().out
    assert "segdeploy export directory (all files intact)" in out
    assert "fp16:     model.fp16.onnx (accuracy NOT checked)" in out
    assert "engine:   model.fp16.engine (fp16, TensorRT 10.3.0.26, Orin (nvgpu))" in out
    path.write_bytes(plan_bytes((10, 3, 0, 26), size=999))  # replaced after the build
    assert main(["inspect", str(path.parent), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["stages"]["inspect"]
    assert rep["kind"] == "export-dir" and not rep["intact"]
    assert {n: f["state"] for n, f in rep["files"].items()} == {
        "model.onnx": "ok", "model.fp16.onnx": "ok", "model.fp16.engine": "modified"}
    assert rep["engines"] == [{"file": "model.fp16.engine", "precision": "fp16", "tensorrt": "10.3.0.26",
                               "gpu": "Orin (nvgpu)"}]
