"""The whole release pipeline on a machine with TensorRT and an NVIDIA GPU: `pytest -m "trt and gpu" tests/build`.

Skipped with the reason where TensorRT or a CUDA GPU is absent (every CPU-only machine; nothing here was run on
the machine this was written on). On a GPU host with TensorRT 8.6 / 10.x / 11.x:

1. ``segdeploy export examples/shapes_unet.pt2 --int8 --fp16 --calib ... --max-miou-drop 1 --engine --json``:
   ONNX + precision + engines (fp32, fp16, int8) in one published step, each engine compared with PyTorch on
   calibration/shapes/val and its drift recorded in the manifest (gate: 1 mIoU point);
2. ``segdeploy check`` on the INT8 engine with the same budget (exit 0), ``segdeploy inspect`` on the FP16 one;
3. ``segdeploy build --precision int8-implicit --rewrite-calib-header`` where the installed TensorRT still has
   implicit INT8 (<= 10.x), replacing nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shapes_unet.pt2"
CALIB = ROOT / "calibration" / "shapes" / "calib"
VAL = ROOT / "calibration" / "shapes" / "val"
BUDGET = "1.0"  # mIoU points

pytestmark = [pytest.mark.trt, pytest.mark.gpu, pytest.mark.slow]


def _cli(capsys, *args):
    from segdeploy.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The one-command release export (run once; its JSON document and directory)."""
    from segdeploy.cli import main

    out = tmp_path_factory.mktemp("release") / "shapes"
    doc_path = out.parent / "result.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", str(EXAMPLE), "--out", str(out), "--shape", "1x3x128x128", "--int8", "--fp16",
                   "--calib", str(CALIB), "--max-miou-drop", BUDGET, "--engine", "--json", "-q"])
    doc_path.write_text(buf.getvalue())
    assert rc == 0, buf.getvalue()[-2000:]
    return out, json.loads(buf.getvalue())


def test_release_pipeline_builds_and_checks_every_engine(release):
    import tensorrt as trt

    from segdeploy.exportdir import ExportDir

    out, doc = release
    b = doc["stages"]["build"]
    assert b["built"] is True and b["tensorrt"] == trt.__version__
    ed = ExportDir.open(out)
    engines = {e["precision"]: e for e in ed.manifest["engines"]}
    assert set(engines) == {"fp32", "fp16", "int8"}
    for e in engines.values():
        plan = (out / e["file"]).read_bytes()
        assert plan[:4] == b"ftrt" and e["tensorrt"]["plan_header"][:3] == [int(v) for v in trt.__version__.split(".")[:3]]
        assert e["gpu"]["name"] and e["gpu"]["compute_capability"]
        par = e["parity"]
        assert par["checked"] is True and par["passed"] is True and par["images"] > 0, par
        assert par["miou_drop_points"] <= float(BUDGET)


def test_check_and_inspect_the_built_engines(capsys, release):
    out, _ = release
    rc, stdout, err = _cli(capsys, "check", "--reference", EXAMPLE, "--candidate", out / "model.int8.engine",
                           "--data", VAL / "images", "--masks", VAL / "masks", "--max-miou-drop", BUDGET, "--json")
    assert rc == 0, err
    rep = json.loads(stdout)["stages"]["check"]
    assert rep["candidate"]["kind"] == "tensorrt" and rep["gate"]["passed"] is True
    rc, stdout, err = _cli(capsys, "inspect", out / "model.fp16.engine", "--json")
    rep = json.loads(stdout)["stages"]["inspect"]
    assert rc == 0 and rep["installed_tensorrt"]["can_load"] is True and rep["manifest"]["sha256_matches"] is True


def test_int8_implicit_where_tensorrt_still_has_it(capsys, release):
    import tensorrt as trt

    from segdeploy.exportdir import ExportDir
    from segdeploy.trt.capabilities import probe

    if not probe(trt).implicit_int8:
        pytest.skip(f"TensorRT {trt.__version__} has no implicit INT8 (removed in 11)")
    out, _ = release
    before = {e["precision"]: e for e in ExportDir.open(out).manifest["engines"]}
    rc, _, err = _cli(capsys, "build", out, "--precision", "int8-implicit", "--rewrite-calib-header", "-q")
    assert rc == 0, err
    after = {e["precision"]: e for e in ExportDir.open(out).manifest["engines"]}
    assert set(after) == set(before) | {"int8-implicit"}
    assert all(after[p]["sha256"] == before[p]["sha256"] for p in before)
