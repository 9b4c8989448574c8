"""The CLI's option groups (segdeploy.cli_options): each adds its options and hands the command one frozen,
validated options object (or an *Args whose parse() makes one)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from segdeploy import cli_options as co
from segdeploy.errors import UsageError


def _invoke(decorator, args):
    """Run a one-group command; return what the command received (or raise what parsing raised)."""
    seen = {}

    @click.command()
    @decorator
    def cmd(**kwargs):
        seen.update(kwargs)

    r = CliRunner().invoke(cmd, args, catch_exceptions=True)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    assert r.exit_code == 0, r.output
    return seen


def test_gate_group():
    from segdeploy.parity.gate import GateOptions

    g = _invoke(co.gate_options, ["--max-miou-drop", "0.5", "--min-agreement", "99.5"])["gate"]
    assert g == GateOptions(max_miou_drop=0.5, min_agreement=99.5) and g.active
    assert not _invoke(co.gate_options, [])["gate"].active
    with pytest.raises(UsageError, match="looks like a fraction"):
        _invoke(co.gate_options, ["--min-class-iou", "0.9"])


def test_dataset_group(tmp_path):
    from PIL import Image

    from segdeploy.datasets import DatasetOptions

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.png")
    d = _invoke(co.dataset_options, ["--data", str(tmp_path / "img"), "--ignore-index", "0", "--label-map", "1:0"])["dataset"]
    assert d == DatasetOptions(str(tmp_path / "img"), None, None, "folder", 0, "1:0")
    ds = d.open()
    assert len(ds) == 1 and ds.ignore_index == 0 and ds.label_map.mapping == {1: 0}
    with pytest.raises(UsageError, match="unknown --layout"):
        DatasetOptions("x", layout="coco")


def test_ort_group():
    from segdeploy.runners.onnxruntime import OrtOptions
    from segdeploy.vocab import DEFAULT_CHECK_ORT_LEVEL, OrtLevel

    o = _invoke(co.ort_options, [])["ort"]
    assert o == OrtOptions(device="cpu", graph_optimization_level=DEFAULT_CHECK_ORT_LEVEL)
    o = _invoke(co.ort_options, ["--ort-opt-level", "disable", "--candidate-device", "cuda"])["ort"]
    assert o.graph_optimization_level is OrtLevel.DISABLE and o.device == "cuda"


def test_instance_gate_group():
    g = _invoke(co.instance_gate_options, ["--min-recall", "90", "--max-score-drift", "0.05"])["instance_gate"]
    assert g.min_recall == 90 and g.max_score_drift == 0.05 and g.active
    with pytest.raises(UsageError, match="--max-score-drift 2.0 must be a score difference"):
        _invoke(co.instance_gate_options, ["--max-score-drift", "2"])


def test_calibration_group(tmp_path):
    args = _invoke(co.calibration_options, ["--calib", str(tmp_path), "--calib-method", "percentile", "--percentile",
                                            "99.9", "--calib-size", "4", "--no-cache", "--trt-target", "8.6.2"])["calibration"]
    assert isinstance(args, co.CalibrationArgs)
    o = args.parse()
    assert o.calib == str(tmp_path) and o.size == 4 and not o.use_cache and o.trt_target == "8.6.2"
    assert o.method.to_dict() == {"kind": "percentile", "percentile": 99.9}
    bad = _invoke(co.calibration_options, ["--calib", str(tmp_path), "--trt-target", "ten"])["calibration"]
    with pytest.raises(UsageError, match="unknown TensorRT target 'ten'"):
        bad.parse()  # parsed by the command, inside its own error handling


def test_trt_version_is_a_hidden_alias_of_trt_target(tmp_path, capsys):
    """One option name for the target TensorRT on every command; the old --trt-version still works, with a note."""
    seen = {}

    @click.command()
    @co.calibration_options
    def cmd(calibration):
        seen["target"] = calibration.parse().trt_target

    r = CliRunner().invoke(cmd, ["--calib", str(tmp_path), "--trt-version", "8.6.2"])
    assert r.exit_code == 0 and seen["target"] == "8.6.2"
    assert "note: --trt-version is deprecated; use --trt-target (same values)\n" in r.output  # stderr, one line
    assert "--trt-version" not in CliRunner().invoke(cmd, ["--help"]).output  # hidden
    with pytest.raises(UsageError, match="--trt-version is the old name of --trt-target; give only --trt-target"):
        _invoke(co.calibration_options, ["--calib", str(tmp_path), "--trt-version", "8.6", "--trt-target", "10.3"])


def test_the_calibration_set_options_are_defined_once():
    from segdeploy.calibration.cli import calibrate_command
    from segdeploy.precision.cli import precision_command

    def opts(cmd):
        return {p.name: p for p in cmd.params}

    cal, prec = opts(calibrate_command), opts(precision_command)
    for name in ("calib_size", "calib_method", "percentile", "seed", "trt_target", "trt_version_legacy"):
        assert cal[name].help == prec[name].help and cal[name].default == prec[name].default, name


def test_a_bad_group_value_is_one_usage_line_and_the_document(capsys, tmp_path):
    from segdeploy.cli import main

    rc = main(["check", "--reference", "m.pt2", "--candidate", "m.onnx", "--data", str(tmp_path), "--min-agreement",
               "0.5", "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.err.count("\n") == 1 and "looks like a fraction" in cap.err
    doc = json.loads(cap.out)
    assert doc["command"] == "check" and doc["exit_code"] == 2 and doc["error"]["type"] == "UsageError"
