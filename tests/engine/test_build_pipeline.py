"""`segdeploy export --engine` (export -> precision -> build in one transaction) and the engines' final parity check.

Without TensorRT (``import tensorrt`` made to fail): the ONNX stages publish, the trtexec commands are printed,
exit 0. With the strict TensorRT stand-in (no engine is built: only the result of its ``build_serialized_network``
is replaced with a handcrafted plan header, see build_helpers.install_standin) the engines are published in the
same step as the ONNX. The parity check of engines against PyTorch needs a GPU and TensorRT to run an engine;
here it is driven with a real ONNX Runtime runner standing in for the engine runner (``open_candidate``) to test
the bookkeeping (drift in the manifest entry) and the gate (exit 3, nothing published).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from build_helpers import (
    TRTEXEC,
    hide_tensorrt,
    install_standin,
    one_error,
    run_cli,
    snapshot,
    trtexec_lines,
)

from segdeploy.exportdir import ExportDir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shapes_unet.pt2"
CALIB = ROOT / "calibration" / "shapes" / "calib"
VAL = ROOT / "calibration" / "shapes" / "val"


def test_cheap_checks_fail_before_the_export(capsys, tmp_path):
    out = tmp_path / "never"
    for args, text in [
        (["--engine", "--trt-target", "7.1"], "unknown TensorRT target '7.1'"),
        (["--engine", "--plugins", tmp_path / "missing.so"], "does not exist or is not a file"),
        (["--trt-target", "8.6"], "--trt-target given without --int8/--fp16 or --engine; add the stage it is for"),
        (["--engine", "--trt-target", "10.x", "--int8-implicit"], "give the device's exact version with --trt-target"),
    ]:
        rc, _, err = run_cli(capsys, "export", EXAMPLE, "--out", out, "--shape", "1x3x128x128", *args)
        assert rc == 2 and one_error(err) and text in err, (args, err)
        assert not out.exists()  # refused before the export started


@pytest.mark.slow
def test_one_trt_target_for_the_cache_header_and_the_commands(capsys, monkeypatch, tmp_path):
    """export --int8 --engine --trt-target: the calibration cache header and the printed commands follow one target,
    so the printed implicit-INT8 command reads the cache as written (no header rewrite needed)."""
    hide_tensorrt(monkeypatch)
    out = tmp_path / "shapes"
    rc, stdout, err = run_cli(capsys, "export", EXAMPLE, "--out", out, "--shape", "1x3x128x128", "--int8", "--calib",
                              CALIB, "--calib-size", "8", "--engine", "--int8-implicit", "--trt-target", "jetpack-6.0",
                              "-q")
    assert rc == 0, err
    assert (out / "model.calib.cache").read_text().startswith("TRT-8602-EntropyCalibration2\n")
    (implicit,) = [c for c in trtexec_lines(stdout) if "--calib=" in c]
    assert implicit.startswith(TRTEXEC) and "--int8 --fp16 --calib=model.calib.cache" in implicit  # no sed copy
    assert "TensorRT 8.6.2, JetPack 6.0" in stdout


@pytest.mark.slow
def test_export_engine_without_tensorrt_publishes_the_onnx_and_prints_commands(capsys, monkeypatch, tmp_path):
    hide_tensorrt(monkeypatch)
    out = tmp_path / "shapes"
    rc, stdout, err = run_cli(capsys, "export", EXAMPLE, "--out", out, "--shape", "1x3x128x128", "--engine",
                              "--trt-target", "8.6", "-q")
    assert rc == 0 and "error" not in err
    assert "engine not built here: TensorRT is not installed" in stdout
    (cmd,) = trtexec_lines(stdout)
    assert cmd.startswith(f"{TRTEXEC} --onnx=model.onnx --saveEngine=model.fp32.plan --minShapes=input:1x3x64x64")
    ed = ExportDir.open(out)  # published and valid
    assert sorted(ed.files) == ["model.onnx"] and "engines" not in ed.manifest
    # the same with --json: stages.build says built=false and carries the command
    rc, stdout, _ = run_cli(capsys, "export", EXAMPLE, "--out", tmp_path / "j", "--shape", "1x3x128x128", "--engine",
                            "--json")
    doc = json.loads(stdout)
    assert rc == 0 and doc["ok"] and doc["published"] and list(doc["files"]) == ["model.onnx"]
    b = doc["stages"]["build"]
    assert b["built"] is False and b["reason"] == "TensorRT is not installed"
    assert (b["target"]["version"], b["target"]["origin"]) == ("10.3.0", "default")  # one default everywhere
    assert [c["precision"] for c in b["commands"]] == ["fp32"] and b["commands"][0]["argv"][1] == "--onnx=model.onnx"


@pytest.mark.slow
def test_export_int8_engine_with_standin_publishes_everything_together(capsys, monkeypatch, tmp_path):
    install_standin(monkeypatch, "10.16")
    out = tmp_path / "shapes"
    rc, stdout, err = run_cli(capsys, "export", EXAMPLE, "--out", out, "--shape", "1x3x128x128", "--int8", "--calib",
                              CALIB, "--calib-size", "8", "--engine", "--json")
    assert rc == 0, err
    doc = json.loads(stdout)
    b = doc["stages"]["build"]
    assert b["built"] is True and [e["precision"] for e in b["engines"]] == ["fp32", "int8"]
    # no GPU here: the engines' parity against PyTorch is not claimed
    for e in b["engines"]:
        assert e["parity"] == {"checked": False,
                               "reason": "no CUDA GPU visible to torch, which the TensorRT runner needs for its buffers"}
    ed = ExportDir.open(out)
    assert {"model.onnx", "model.int8.onnx", "model.fp32.engine", "model.int8.engine"} <= set(ed.files)
    assert ed.files["model.int8.engine"].derived_from == {"model.int8.onnx": ed.files["model.int8.onnx"].sha256}
    assert doc["files"] == ed.manifest["files"]


# ------------------------------------------------------------------------------------- final parity check


@pytest.fixture()
def small_val(tmp_path) -> Path:
    """The first 8 images (+ masks) of the shipped validation split."""
    d = tmp_path / "val"
    for sub in ("images", "masks"):
        (d / sub).mkdir(parents=True)
        for p in sorted((VAL / sub).iterdir())[:8]:
            shutil.copy(p, d / sub / p.name)
    return d


class ShiftedRunner:
    """Factory of a deliberately worse candidate: ONNX Runtime on the engine's source ONNX, then +``bias`` on the
    logits of class 0 (background) -- a real, known degradation used to trip the gate."""

    def __init__(self, export_dir: Path, bias: float):
        self.export_dir, self.bias = export_dir, bias

    def __call__(self, engine_path, entry):
        from segdeploy.runners.onnxruntime import OrtRunner

        bias = self.bias

        class Shifted(OrtRunner):
            def _infer(self, batch: np.ndarray) -> np.ndarray:
                out = super()._infer(batch).copy()
                out[:, 0] += bias
                return out

        return Shifted(Path(engine_path).parent / entry["source_onnx"])


@pytest.mark.slow
def test_engine_parity_is_recorded_and_gated(monkeypatch, int8_export, copy_export, small_val):
    from segdeploy.engine.request import BuildRequest
    from segdeploy.engine.stage import run
    from segdeploy.engine.verify import check_engines
    from segdeploy.errors import GateError
    from segdeploy.exportdir import Transaction
    from segdeploy.load import load_model
    from segdeploy.parity.check import CheckOptions, run_check
    from segdeploy.precision.stage import PrecisionOptions

    d = copy_export(int8_export)
    reference = load_model(EXAMPLE).module
    popts = PrecisionOptions(fp16=True, val=str(small_val), max_miou_drop=0.5)
    trt = install_standin(monkeypatch, "10.16")

    with Transaction(d, fresh=False, command="test") as txn:
        res = run(txn, BuildRequest(precisions=("int8",), use_timing_cache=False), trt_module=trt)
        recs = check_engines(txn, res, reference, popts, open_candidate=ShiftedRunner(d, 0.0))
        txn.commit()
    (rec,) = recs
    (entry,) = ExportDir.open(d).manifest["engines"]
    assert entry["parity"] == rec and rec["checked"] and rec["images"] == 8 and rec["mode"] == "labelled"
    assert rec["max_miou_drop"] == 0.5 and rec["passed"] is True
    # the numbers are run_check's own: the same check, run directly on the engine's source ONNX
    direct = run_check(reference, str(d / "model.int8.onnx"), str(small_val / "images"), str(small_val / "masks"),
                       manifest=str(d), options=CheckOptions())
    assert rec["miou_drop_points"] == round(direct.metrics["drift"]["miou_points"], 4)
    assert rec["engine_miou"] == direct.metrics["candidate"]["miou"]

    before = snapshot(d)["files"]
    with pytest.raises(GateError) as e:
        with Transaction(d, fresh=False, command="test") as txn:
            res = run(txn, BuildRequest(use_timing_cache=False), trt_module=trt)
            check_engines(txn, res, reference, popts, open_candidate=ShiftedRunner(d, 50.0))
            txn.commit()
    msg = e.value.message
    assert e.value.exit_code == 3 and "\n" not in msg and "nothing was published" in msg
    for name in ("model.fp32.engine", "model.fp16.engine", "model.int8.engine"):
        assert f"{name}: mIoU drop" in msg
    assert "budget 0.5" in msg
    # every engine was measured before the gate tripped, and the records say so
    assert [r["parity"]["passed"] for r in res.engines] == [False, False, False]
    assert [r["parity"] for r in e.value.engines] == [r["parity"] for r in res.engines]  # evidence for the CLI
    assert all(r["parity"]["miou_drop_points"] > 0.5 for r in res.engines)
    assert snapshot(d)["files"] == before  # nothing was published


def test_parity_skipped_without_validation_or_engines(tmp_path):
    from segdeploy.engine.stage import BuildStageResult
    from segdeploy.engine.verify import check_engines
    from segdeploy.precision.stage import PrecisionOptions

    not_built = BuildStageResult(export_dir=tmp_path, built=False)
    assert check_engines(None, not_built, object(), PrecisionOptions(fp16=True)) == []
    built = BuildStageResult(export_dir=tmp_path, built=True, engines=[{"file": "model.fp32.engine"}])
    assert check_engines(None, built, object(), PrecisionOptions(fp16=True)) == []  # no --val, no calib sibling
    assert built.engines == [{"file": "model.fp32.engine"}]
    assert "no validation split" in built.notes[0]
