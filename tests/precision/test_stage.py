"""The precision stage end to end: export dir -> calibrate -> INT8/FP16 -> CPU check -> manifest, in one transaction."""

from __future__ import annotations

import json
import os
import shutil

import click
import pytest
import torch
from click.testing import CliRunner

from segdeploy.errors import ArtifactError, DataError, GateError, UsageError
from segdeploy.exportdir import ExportDir
from segdeploy.pipeline import run_stage
from segdeploy.precision import stage
from segdeploy.precision.stage import PrecisionOptions
from segdeploy.progress import as_progress

from precision_helpers import TinySeg, write_images


def lower(export_dir, reference, options, progress=None):
    """The precision stage on a published directory: the pipeline's one way to run one stage (run_stage)."""
    res, _ = run_stage(export_dir, stage.run, options, as_progress(progress), command="precision", reference=reference)
    return res


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An export directory of TinySeg (32x32 opt) plus calibration/<set>/{calib,val} data."""
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    torch.manual_seed(0)
    module = TinySeg().eval()
    root = tmp_path_factory.mktemp("pipe")
    export_model(module, root / "export", ExportOptions(shape="1x3x32x32"))
    write_images(root / "set" / "calib", 8, 32, seed=1)
    write_images(root / "set" / "val" / "images", 6, 32, seed=2, masks_from=module)
    return module, root


@pytest.fixture
def exp(base, tmp_path):
    module, root = base
    d = tmp_path / "export"
    shutil.copytree(root / "export", d)
    return module, d, root / "set"


def _leftovers(d):
    """Hidden files in or beside the export directory other than its lock (staging, temp files)."""
    return sorted(p.name for p in list(d.iterdir()) + list(d.parent.iterdir())
                  if p.name.startswith(".") and p.name != f".{d.name}.lock")


def _snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_int8_and_fp16_written_with_manifest_section(exp):
    module, d, data = exp
    lines = []
    res = lower(d, module, PrecisionOptions(int8=True, fp16=True, calib=str(data / "calib"), calib_method="max"),
                progress=lines.append)
    for name in ("model.int8.onnx", "model.fp16.onnx", "ranges.json", "model.calib.cache"):
        assert (d / name).is_file(), name
    doc = ExportDir.open(d).manifest
    assert set(doc["files"]) == {"model.onnx", "model.int8.onnx", "model.fp16.onnx", "ranges.json", "model.calib.cache"}
    assert doc["files"]["model.int8.onnx"]["derived_from"] == {
        "model.onnx": doc["files"]["model.onnx"]["sha256"], "ranges.json": doc["files"]["ranges.json"]["sha256"]}
    sec = doc["precision"]
    assert {k: v for k, v in sec.items()} == res.section
    i8 = sec["int8"]
    assert i8["rule_check"] == "passed" and i8["quantized_layers"] == 6
    assert i8["method"]["kind"] == "max" and i8["calibration_set"]["size"] == 8
    assert {x["reason"].split(" ")[0] for x in i8["excluded_layers"]} == {"3->16", "16->4"}
    assert i8["sha256"] == doc["files"]["model.int8.onnx"]["sha256"]
    assert doc["calibration"]["trt_cache_version"] == 100300 and doc["calibration"]["ranges_file"] == "ranges.json"
    for kind in ("int8", "fp16"):
        acc = sec[kind]["accuracy"]
        assert set(acc["levels"]) == {"disable", "all"} and acc["images"] == 6 and acc["truth"] == "masks"
        assert acc["reference"]["miou"] == pytest.approx(1.0)  # masks are the reference's own predictions
        assert acc["levels"]["disable"]["agreement_vs_reference"] > 0.8
    assert sec["fp16"]["kept_fp32"] == [] and "calibration absmax" in sec["fp16"]["overflow_check"]
    assert doc["calibration"]["method"]["kind"] == "max"
    assert any("validation split:" in n and "the convention for --calib" in n for n in sec["notes"])  # <set>/val
    assert sec["int8"]["checked"] is True and sec["fp16"]["checked"] is True
    assert any(line.startswith("check:") for line in lines)
    from segdeploy.calibration import read_trt_cache

    assert read_trt_cache(d / "model.calib.cache").ranges
    assert _leftovers(d) == []


def test_gate_failure_ships_nothing_and_keeps_good_artifacts(exp):
    _, d, data = exp
    torch.manual_seed(123)
    wrong_reference = TinySeg().eval()  # the ONNX cannot match it: no fallback recovers the drop
    lower(d, TinySeg().eval(), PrecisionOptions(fp16=True))  # a good published state to keep
    before = _snapshot(d)
    # unlabelled validation images: scored against the (wrong) reference's own predictions
    opts = PrecisionOptions(int8=True, calib=str(data / "calib"), calib_method="max", max_miou_drop=1.0, budget_images=4,
                            val=str(data / "val" / "images"))
    with pytest.raises(GateError) as ei:
        lower(d, wrong_reference, opts)
    assert ei.value.exit_code == 3 and "best drop" in str(ei.value)
    assert _snapshot(d) == before  # byte-identical: nothing published
    assert ei.value.stages["precision"]["precision"]["int8"]["budget"]["best_drop_points"] > 1.0  # evidence travels with it
    assert _leftovers(d) == []


def test_junk_under_an_artifact_name_is_replaced(exp):
    module, d, data = exp
    (d / "model.fp16.onnx").mkdir()  # not in the file table: not part of the published set
    lower(d, module, PrecisionOptions(fp16=True, calib=str(data / "calib")))
    assert (d / "model.fp16.onnx").is_file() and "fp16" in ExportDir.open(d).manifest["precision"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_export_dir(exp):
    module, d, data = exp
    os.chmod(d, 0o555)
    try:
        with pytest.raises(ArtifactError, match="not writable"):
            lower(d, module, PrecisionOptions(fp16=True))
    finally:
        os.chmod(d, 0o755)


def test_missing_manifest_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="holds no manifest.json"):
        lower(tmp_path, None, PrecisionOptions(fp16=True))


def test_overlapping_validation_is_refused(exp, tmp_path):
    module, d, data = exp
    val = tmp_path / "val" / "images"
    val.mkdir(parents=True)
    shutil.copy(next((data / "calib").iterdir()), val / "dup.png")
    with pytest.raises(DataError, match="also in the calibration set"):
        lower(d, module, PrecisionOptions(int8=True, calib=str(data / "calib"), val=str(val.parent)))


def test_fp16_without_calibration_says_overflow_check_not_run(exp):
    module, d, data = exp
    res = lower(d, module, PrecisionOptions(fp16=True, val=str(data / "val")))
    assert "not run" in res.section["fp16"]["overflow_check"]
    assert any("could not be detected" in n for n in res.notes)
    assert res.section["fp16"]["accuracy"]["levels"]["disable"]["miou_drop_points"] < 5


def test_option_validation():
    with pytest.raises(UsageError, match="nothing to do"):
        PrecisionOptions()
    with pytest.raises(UsageError, match="--int8 needs calibration images"):
        PrecisionOptions(int8=True)
    with pytest.raises(UsageError, match="unknown --calib-method"):
        PrecisionOptions(fp16=True, calib_method="kl")
    with pytest.raises(UsageError, match="--max-miou-drop must be >= 0"):
        PrecisionOptions(fp16=True, max_miou_drop=-1)
    with pytest.raises(UsageError, match="does not exist"):
        PrecisionOptions(int8=True, calib="/nonexistent/calib")


def test_cli_options_parse_validate_and_pass_through(tmp_path):
    from segdeploy.cli_options import PrecisionArgs, precision_options

    seen = {}

    @click.command()
    @click.option("--out")
    @precision_options
    def cmd(out, precision):
        seen["args"] = precision
        seen["options"] = precision.parse()

    calib = tmp_path / "c"
    calib.mkdir()
    r = CliRunner().invoke(cmd, ["--out", "x", "--int8", "--calib", str(calib), "--calib-method", "percentile",
                                 "--percentile", "99.9", "--max-miou-drop", "0.5", "--exclude-layer", "/a/Conv",
                                 "--trt-target", "8.6"])
    assert r.exit_code == 0, r.output
    assert isinstance(seen["args"], PrecisionArgs)
    o = seen["options"]
    assert o.int8 and not o.fp16 and o.calib_method == "percentile" and o.percentile == 99.9
    assert o.max_miou_drop == 0.5 and o.exclude == ("/a/Conv",) and o.trt_target == "8.6"
    seen.clear()
    r = CliRunner().invoke(cmd, ["--out", "x"])
    assert r.exit_code == 0 and seen["options"] is None  # no precision flags: the stage does not run
    r = CliRunner().invoke(cmd, ["--out", "x", "--calib", str(calib)])
    assert isinstance(r.exception, UsageError) and "without --int8 or --fp16" in str(r.exception)
    r = CliRunner().invoke(cmd, ["--out", "x", "--int8"])
    assert isinstance(r.exception, UsageError) and "needs calibration images" in str(r.exception)


def test_unwritable_export_dir_even_as_root(exp, monkeypatch):
    """Same path as the chmod test, for CI running as root: the writability probe says no."""
    import segdeploy.exportdir as ed

    module, d, data = exp
    real = ed.os.access
    monkeypatch.setattr(ed.os, "access", lambda p, mode: False if os.path.samefile(p, d) else real(p, mode))
    with pytest.raises(ArtifactError, match="not writable"):
        lower(d, module, PrecisionOptions(int8=True, calib=str(data / "calib")))
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "model.onnx"]


def test_no_quantizable_layer_through_the_stage(tmp_path, base):
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    class NoConv(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x) * 2.0 - 1.0

    _, root = base
    export_model(NoConv().eval(), tmp_path / "e", ExportOptions(shape="1x3x32x32"))
    before = sorted(p.name for p in (tmp_path / "e").iterdir())
    # the validation masks (4 classes) cannot belong to this 3-channel "model": refused before any work
    with pytest.raises(UsageError, match=r"has label\(s\) \[3\] but the model has 3 classes"):  # exit 2
        lower(tmp_path / "e", NoConv().eval(), PrecisionOptions(int8=True, calib=str(root / "set" / "calib")))
    with pytest.raises(UsageError, match="no quantizable layer"):
        lower(tmp_path / "e", NoConv().eval(), PrecisionOptions(int8=True, calib=str(root / "set" / "calib"),
                                                               val=str(root / "set" / "val" / "images")))
    after = sorted(p.name for p in (tmp_path / "e").iterdir())
    assert after == before and "precision" not in ExportDir.open(tmp_path / "e").manifest


def test_second_method_reuses_cached_statistics(exp, tmp_path, monkeypatch):
    module, d, data = exp
    monkeypatch.setenv("SEGDEPLOY_CACHE_DIR", str(tmp_path / "cache"))  # an empty statistics cache
    # histograms serve every method; max alone collects only the max (which cannot serve percentile)
    a = lower(d, module, PrecisionOptions(int8=True, calib=str(data / "calib"), calib_method="percentile", percentile=99.0))
    b = lower(d, module, PrecisionOptions(int8=True, calib=str(data / "calib"), calib_method="max"))
    assert not a.calibration.cache_hit and b.calibration.cache_hit
    assert ExportDir.open(d).manifest["precision"]["int8"]["method"] == {"kind": "max"}
    ra, rb = a.calibration.ranges, b.calibration.ranges
    assert all(ra[k] <= rb[k] + 1e-6 for k in rb)  # a 99th percentile never exceeds the max
