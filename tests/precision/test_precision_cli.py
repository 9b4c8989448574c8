"""`segdeploy precision EXPORT_DIR MODEL ...` through the real entry point (exit codes, JSON, hash check)."""

from __future__ import annotations

import json

import pytest
import torch

from segdeploy.cli import main

from precision_helpers import TinySeg, write_images


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    d = tmp_path_factory.mktemp("pcli")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ts = torch.jit.trace(TinySeg().eval(), torch.randn(1, 3, 32, 32))
        p = d / f"tiny{seed}.ts"
        ts.save(str(p))
        paths.append(p)
    export_model(str(paths[0]), d / "export", ExportOptions(shape="1x3x32x32"))
    write_images(d / "calib", 6, 32, seed=5)
    return d, paths


def test_precision_command_json(bundle, capsys):
    d, (model, _) = bundle
    rc = main(["precision", str(d / "export"), str(model), "--int8", "--calib", str(d / "calib"), "--calib-method", "max",
               "--json", "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads(out)
    assert res["schema"] == "segdeploy.result" and res["command"] == "precision" and res["published"]
    assert {"model.int8.onnx", "ranges.json", "model.calib.cache"} <= set(res["files"])
    doc = res["stages"]["precision"]
    assert doc["precision"]["int8"]["rule_check"] == "passed"
    assert doc["precision"]["int8"]["accuracy"] is None  # no validation split: not checked, and said so
    assert doc["precision"]["int8"]["checked"] is False
    assert any("accuracy NOT CHECKED" in n for n in doc["notes"])


def test_precision_command_refuses_another_model(bundle, capsys):
    d, (_, other) = bundle
    rc = main(["precision", str(d / "export"), str(other), "--fp16"])
    assert rc == 2 and "is not the model" in capsys.readouterr().err


def test_precision_command_usage_errors(bundle, capsys, tmp_path, monkeypatch):
    d, (model, _) = bundle
    monkeypatch.chdir(tmp_path)  # no ./calibration/ here
    assert main(["precision", str(d / "export"), str(model)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["precision", str(d / "export"), str(model), "--int8"]) == 2
    assert "needs calibration images" in capsys.readouterr().err


def test_precision_command_prints_the_summary_table(bundle, capsys):
    d, (model, _) = bundle
    rc = main(["precision", str(d / "export"), str(model), "--fp16", "--calib", str(d / "calib"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "fp16 kept FP32" in out and "wrote fp16" in out and "overflow check: calibration absmax" in out


def test_exclude_layer_applies_to_fp16(bundle, capsys, tmp_path):
    """--exclude-layer keeps the node FP32 in model.fp16.onnx too (it was silently ignored for FP16)."""
    import shutil

    import onnx

    d, (model, _) = bundle
    exp = tmp_path / "export"
    shutil.copytree(d / "export", exp)
    conv = next(n.name for n in onnx.load(str(exp / "model.onnx")).graph.node if n.op_type == "Conv")
    rc = main(["precision", str(exp), str(model), "--fp16", "--exclude-layer", conv, "--json", "-q"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0, res
    kept = res["stages"]["precision"]["precision"]["fp16"]["kept_fp32"]
    assert {"node": conv, "op": "Conv", "reason": "kept by name"} in kept
    g = onnx.load(str(exp / "model.fp16.onnx")).graph
    node = next(n for n in g.node if n.name == conv)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(
        onnx.load(str(exp / "model.fp16.onnx"))).graph.value_info}
    assert types[node.output[0]] == onnx.TensorProto.FLOAT
    rc = main(["precision", str(exp), str(model), "--fp16", "--exclude-layer", "no_such_node", "-q"])
    assert rc == 2 and "names no node" in capsys.readouterr().err


def test_export_int8_json_is_one_document(bundle, capsys, tmp_path):
    d, (model, _) = bundle
    rc = main(["export", str(model), "--out", str(tmp_path / "e"), "--shape", "1x3x32x32", "--max-batch", "2", "--int8",
               "--calib", str(d / "calib"), "--calib-method", "max", "--json", "-q"])
    out = capsys.readouterr().out
    res = json.loads(out)  # exactly one JSON document on stdout
    assert rc == 0 and res["command"] == "export" and res["ok"]
    assert set(res["stages"]) == {"export", "precision"}
    assert res["stages"]["precision"]["precision"]["int8"]["rule_check"] == "passed"
    assert {"model.onnx", "model.int8.onnx", "ranges.json", "model.calib.cache"} == set(res["files"])


def test_calibrate_then_precision_reuses_the_statistics(bundle, capsys, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("SEGDEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    d, (model, _) = bundle
    exp = tmp_path / "export"
    shutil.copytree(d / "export", exp)
    assert main(["calibrate", str(exp), "--calib", str(d / "calib"), "--calib-method", "max", "--json", "-q"]) == 0
    cal = json.loads(capsys.readouterr().out)["stages"]["calibrate"]
    assert cal["statistics_cached"] is False
    ranges_before = (exp / "ranges.json").read_bytes()
    assert main(["precision", str(exp), str(model), "--int8", "--calib", str(d / "calib"), "--calib-method", "max",
                 "--json", "-q"]) == 0
    prec = json.loads(capsys.readouterr().out)["stages"]["precision"]
    assert prec["calibration"]["statistics_cached"] is True  # the model did not run again
    assert (exp / "ranges.json").read_bytes() == ranges_before  # same statistics, same ranges, one writer
