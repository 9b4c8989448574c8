"""Factories that raise, exit or download; usage errors; profiles the model itself cannot run."""

from __future__ import annotations

import pytest

from rhelpers import CALIB, EXAMPLE, one_error_line, run
from segdeploy.exportdir import ExportDir


@pytest.mark.parametrize("factory, match", [
    ("raises_value_error", "factory rmodels:raises_value_error raised ValueError: the config file says depth=-1"),
    ("calls_exit", "called sys.exit(0) instead of returning a model"),
    ("downloads", "tried to download weights"),
    ("torch_hub_download", "tried to download weights"),
    ("returns_a_dict", "returned a dict, not an nn.Module"),
])
def test_bad_factories(tmp_path, capsys, factory, match):
    code, _, err = run(capsys, "export", "--model", f"rmodels:{factory}", "--out", tmp_path / "o", "-q")
    line = one_error_line(err)
    assert code == 1 and match in line
    assert not (tmp_path / "o").exists()


def test_smp_default_encoder_weights_are_not_downloaded(tmp_path, capsys):
    pytest.importorskip("segmentation_models_pytorch")
    code, _, err = run(capsys, "export", "--model", "segmentation_models_pytorch:Unet", "--model-arg", "encoder_name=resnet18",
                       "--out", tmp_path / "o", "-q")
    line = one_error_line(err)
    assert code == 1 and "tried to download weights" in line and "encoder_weights=none" in line


@pytest.mark.parametrize("argv, match", [
    (["export", "--model", "rmodels:tiny"], "--model PKG.MODULE:FACTORY has no file to put the export beside; pass --out DIR"),
    (["export", EXAMPLE, "--out", "x", "--opset", "ten"], "'ten' is not a valid integer"),
    (["export", EXAMPLE, "--out", "x", "--exporter", "onnx"], "'onnx' is not one of"),
    (["check", "--candidate", "a.onnx"], "missing option '--data'"),
    (["calibrate"], "missing argument 'EXPORT_DIR'"),
    (["export", EXAMPLE, "--out", "x", "--calib", "/nonexistent"], "does not exist"),
    (["export", EXAMPLE, "--out", "x", "--calib", str(CALIB)], "--calib given without --int8 or --fp16"),
    (["export", EXAMPLE, "--out", "x", "--int8"], "--int8 needs calibration images"),
    (["export", EXAMPLE, "--out", "x", "--weights", "w.pt"], "--weights applies only with --model"),
    (["export", "--model", "rmodels:tiny", "--out", "x", "--class-names", "a,,b"], "--class-names has an empty name"),
    (["nosuchcommand"], "no such command 'nosuchcommand'"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    line = one_error_line(err)
    assert code == 2 and match in line, err
    assert not (tmp_path / "x").exists()


def test_checks_that_need_the_model_come_before_the_export(tmp_path, capsys):
    """Class-name count is checked right after the cheap probe, not after a long export."""
    lines = []
    code, _, err = run(capsys, "export", EXAMPLE, "--out", tmp_path / "o", "--shape", "1x3x128x128",
                       "--class-names", "a,b,c")
    assert code == 2 and "lists 3 names but the model outputs 6" in one_error_line(err)
    assert "export with the" not in err  # no exporter ran
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "export", EXAMPLE, "--out", tmp_path / "o", "--int8", "--calib", empty)
    assert code == 1 and "contains no images" in one_error_line(err) and "load model" not in err
    del lines


def test_square_only_model_gets_static_hw_with_the_reason(tmp_path, capsys):
    code, out, err = run(capsys, "export", "--model", "rmodels:square_only", "--out", tmp_path / "o", "--shape", "1x3x64x64",
                         "--max-batch", "2")
    assert code == 0, err
    m = ExportDir.open(tmp_path / "o").manifest
    assert m["inputs"][0]["profile"]["dynamic_axes"] == ["batch"]
    assert [s["axis"] for s in m["static_axes"]] == ["height", "width"]
    assert "non-square" in m["static_axes"][0]["reason"] and "static height/width" in err


def test_square_only_model_with_user_profile_stops(tmp_path, capsys):
    code, _, err = run(capsys, "export", "--model", "rmodels:square_only", "--out", tmp_path / "o", "--shape", "1x3x64x64",
                       "--min-shape", "1x3x32x32", "--max-shape", "2x3x128x128", "-q")
    line = one_error_line(err)
    assert code == 2 and "non-square size" in line and "--min-shape and --max-shape" in line


def test_min_size_model_gets_its_min_narrowed(tmp_path, capsys):
    code, out, err = run(capsys, "export", "--model", "rmodels:min_size", "--out", tmp_path / "o", "--shape", "1x3x64x64",
                         "--max-batch", "2")
    assert code == 0, err
    m = ExportDir.open(tmp_path / "o").manifest
    assert m["inputs"][0]["profile"]["min"] == [1, 3, 48, 48]
    n = m["profile_narrowed"][0]
    assert n["bound"] == "min" and n["from"] == [1, 3, 32, 32] and "too small for the pyramid" in n["reason"]
    code, _, err = run(capsys, "export", "--model", "rmodels:min_size", "--out", tmp_path / "p", "--shape", "1x3x64x64",
                       "--min-shape", "1x3x32x32", "-q")
    line = one_error_line(err)
    assert code == 2 and "--min-shape H/W 32x32" in line and "too small for the pyramid" in line and "larger --min-shape" in line
