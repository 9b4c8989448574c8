"""`segdeploy calibrate`: outputs, manifest section, cache reuse, exit codes."""

from __future__ import annotations

import json

import pytest

from calib_helpers import make_export_dir, write_images

from segdeploy.trt.calib_cache import read_trt_cache
from segdeploy.calibration.ranges_file import read_ranges_json
from segdeploy.cli import main
from segdeploy.exportdir import ExportDir


def test_calibrate_command(tmp_path, capsys, images):
    exp = make_export_dir(tmp_path / "exp")
    rc = main(["calibrate", str(exp), "--calib", str(images), "--calib-size", "6", "--trt-target", "8.6.2", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "segdeploy.result" and doc["ok"] and doc["published"]
    out = doc["stages"]["calibrate"]
    assert set(doc["files"]) == {"model.onnx", "ranges.json", "model.calib.cache"}
    assert out["images"] == 6 and out["tensors"] == 4 and not out["statistics_cached"] and out["trt_cache_version"] == 8602
    ranges, meta = read_ranges_json(exp / "ranges.json")
    cache = read_trt_cache(exp / "model.calib.cache")
    assert list(cache.ranges) == ["input", "conv1", "relu1", "logits"]  # graph order
    assert set(ranges) == set(cache.ranges)
    for k, v in ranges.items():
        assert cache.ranges[k] == pytest.approx(v, rel=1e-6)
    sec = ExportDir.open(exp).manifest["calibration"]
    # the default method (no --calib-method): auto, with the kind chosen per tensor counted in the manifest and
    # named per tensor in ranges.json
    method = sec["method"]
    assert method["kind"] == "auto" and method["percentile"] == 99.99 and "rule" in method
    assert sum(method["chosen"].values()) == 4 and set(method["chosen"]) <= {"entropy", "percentile"}
    assert set(meta["per_tensor_method"]) == set(ranges)
    assert sorted(meta["per_tensor_method"].values()) == sorted(k for k, n in method["chosen"].items() for _ in range(n))
    assert sec["set"]["size"] == 6 and sec["trt_cache_file"] == "model.calib.cache" and meta["set"]["seed"] == 0
    rc = main(["calibrate", str(exp), "--calib", str(images), "--calib-size", "6",
               "--calib-method", "max", "--json"])
    assert rc == 0
    out2 = json.loads(capsys.readouterr().out)["stages"]["calibrate"]
    assert out2["statistics_cached"] and ExportDir.open(exp).manifest["calibration"]["method"] == {"kind": "max"}


def test_calibrate_command_errors(tmp_path, capsys, images):
    exp = make_export_dir(tmp_path / "exp")
    assert main(["calibrate", str(exp), "--calib", str(images), "--trt-target", "ten"]) == 2
    assert "unknown TensorRT target 'ten'" in capsys.readouterr().err
    gray = write_images(tmp_path / "gray", 2, mode="L")
    assert main(["calibrate", str(exp), "--calib", str(gray), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 of 2 calibration image(s)") and "--calib-gray replicate" in err
    assert not (exp / "ranges.json").exists() and not (exp / "model.calib.cache").exists()
    assert "calibration" not in ExportDir.open(exp).manifest
    assert main(["calibrate", str(exp), "--calib", str(gray), "--calib-gray", "replicate", "-q"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(exp / "model.onnx"), "--calib", str(images)]) == 2
    err = capsys.readouterr().err
    assert "is a file; see 'segdeploy calibrate --help'" in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", str(exp), "--calib", str(empty)]) == 1
    assert "contains no images" in capsys.readouterr().err


def test_calibrate_target_forms_and_the_old_option_name(tmp_path, capsys, images):
    exp = make_export_dir(tmp_path / "exp")
    # a range cannot name the header: its example version's, with a note that implicit INT8 needs the exact one
    assert main(["calibrate", str(exp), "--calib", str(images), "--calib-size", "2", "--trt-target", "10.x",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stages"]["calibrate"]["trt_cache_version"] == 101303
    assert any("give the device's exact version with --trt-target" in n for n in doc["notes"] + doc["stages"]["calibrate"].get("notes", []))
    # the old name still works: one note on stderr
    assert main(["calibrate", str(exp), "--calib", str(images), "--calib-size", "2", "--trt-version", "jetpack-6.0",
                 "-q"]) == 0
    assert capsys.readouterr().err == "note: --trt-version is deprecated; use --trt-target (same values)\n"
    assert read_trt_cache(exp / "model.calib.cache").version_code == 8602
