"""`segdeploy export/precision ... --end-to-end` (the e2e option group, the pipeline's e2e stage, run_stage on a
published directory): the variants are written in the same transaction, the summary shows each with its agreement,
the JSON document carries the stage, and bad options are one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from segdeploy.cli import main
from segdeploy.exportdir import ExportDir
from segdeploy.vocab import CLASS_MAP_NAME, E2E_INPUT_NAME, E2E_SCORES_NAME, Precision

ROOT = Path(__file__).resolve().parents[2]
CALIB = ROOT / "calibration" / "shapes" / "calib"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()} if d.exists() else {}


def test_export_end_to_end_json_and_files(tmp_path, capsys, tiny_pt2):
    out = tmp_path / "tiny"
    code, stdout, _ = _run(capsys, "export", tiny_pt2, "--out", out, "--shape", "1x3x32x32", "--max-batch", "2",
                           "--end-to-end", "--with-scores", "--class-dtype", "int32", "--json", "-q")
    assert code == 0
    doc = json.loads(stdout)
    stage = doc["stages"]["end_to_end"]
    assert stage["files"] == {"fp32": "model.e2e.onnx"}
    assert [o["name"] for o in stage["outputs"]] == [CLASS_MAP_NAME, E2E_SCORES_NAME]
    assert stage["outputs"][0]["dtype"] == "int32"
    assert stage["profile"]["max"] == [2, 64, 64, 3] and "ArgMax over the classes" in stage["in_graph"]
    ver = stage["verification"]["fp32"]
    assert ver["passed"] and ver["min_agreement_vs_source"] == 1.0 and ver["min_agreement_vs_torch"] is not None
    ed = ExportDir.open(out)
    assert ed.e2e_file(Precision.FP32) == "model.e2e.onnx" and "model.e2e.onnx" in doc["files"]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(ed.file("model.e2e.onnx")), so, providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(1).integers(0, 256, (2, 30, 26, 3), dtype=np.uint8)  # unaligned: padded in the graph
    classes, scores = sess.run([CLASS_MAP_NAME, E2E_SCORES_NAME], {E2E_INPUT_NAME: frames})
    assert classes.dtype == np.int32 and classes.shape == (2, 30, 26) and scores.shape == (2, 3, 30, 26)
    assert np.array_equal(classes, scores.argmax(1))


def test_export_summary_prints_each_variant_with_its_agreement(tmp_path, capsys, tiny_pt2):
    out = tmp_path / "tiny"
    code, stdout, _ = _run(capsys, "export", tiny_pt2, "--out", out, "--shape", "1x3x32x32", "--max-batch", "2",
                           "--end-to-end", "--fp16", "-q")
    assert code == 0
    lines = stdout.splitlines()
    head = next(ln for ln in lines if ln.startswith("end-to-end"))
    assert "uint8 NHWC RGB frame in -> uint8 class map out" in head  # the default class map type is printed
    rows = {ln.split()[0]: ln for ln in lines if ln.strip().startswith("model.") and ln.strip().endswith(("ok", "FAIL"))}
    assert set(rows) == {"model.e2e.onnx", "model.fp16.e2e.onnx"}
    assert all("100.00%" in r and r.endswith("ok") for r in rows.values())
    assert any("bytes per 32x32 frame" in ln for ln in lines)
    ed = ExportDir.open(out)
    assert ed.e2e_file(Precision.FP16) == "model.fp16.e2e.onnx"


@pytest.mark.parametrize("extra, match", [
    (["--class-dtype", "uint8"], "--class-dtype given without --end-to-end; add --end-to-end"),
    (["--with-scores", "--frame-order", "BGR"], "--with-scores, --frame-order given without --end-to-end"),
    (["--end-to-end", "--resize", "resize"], "--end-to-end needs pad preprocessing"),
    (["--end-to-end", "--class-dtype", "int64"], "invalid value for '--class-dtype'"),
])
def test_export_refusals_are_one_line_and_write_nothing(tmp_path, capsys, tiny_pt2, extra, match, monkeypatch):
    import segdeploy.load

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(segdeploy.load, "load_model", no_load)
    out = tmp_path / "tiny"
    code, _, err = _run(capsys, "export", tiny_pt2, "--out", out, "--shape", "1x3x32x32", *extra)
    assert code == 2 and match in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err and not out.exists()


def test_precision_end_to_end_on_a_published_directory(tmp_path, capsys, tiny_pt2):
    out = tmp_path / "tiny"
    assert _run(capsys, "export", tiny_pt2, "--out", out, "--shape", "1x3x32x32", "--max-batch", "2", "-q")[0] == 0
    before = _files(out)
    # bad options: one line, the directory untouched
    code, _, err = _run(capsys, "precision", out)
    assert code == 2 and "nothing to do: give --int8, --fp16 and/or --end-to-end" in err
    code, _, err = _run(capsys, "precision", out, "--frame-order", "BGR")
    assert code == 2 and "--frame-order given without --end-to-end" in err and _files(out) == before
    # --end-to-end alone, no MODEL: verified against the source ONNX, PyTorch said not compared
    code, stdout, _ = _run(capsys, "precision", out, "--end-to-end", "--frame-order", "BGR", "--json", "-q")
    assert code == 0
    ver = json.loads(stdout)["stages"]["end_to_end"]["verification"]["fp32"]
    assert ver["passed"] and ver["min_agreement_vs_torch"] is None
    ed = ExportDir.open(out)
    assert ed.end_to_end["input"]["channel_order"] == "BGR" and ed.e2e_file(Precision.FP32)
    assert "not compared" in ed.end_to_end["variants"]["fp32"]["verification"]["torch"]
    # with MODEL and --fp16: the precision stage, then both variants, one transaction
    code, stdout, _ = _run(capsys, "precision", out, tiny_pt2, "--fp16", "--end-to-end", "-q")
    assert code == 0 and "model.fp16.e2e.onnx" in stdout
    ed = ExportDir.open(out)
    assert ed.e2e_file(Precision.FP16) and ed.end_to_end["variants"]["fp32"]["verification"]["torch"] == "compared, gated"
