"""`segdeploy export` end to end on small models: artifacts, JSON, exit codes, atomicity, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import tinymodels
from segdeploy.cli import main
from segdeploy.exportdir import ExportDir


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _artifacts(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_export_pt2_json(tmp_path, capsys, tiny_pt2):
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, "export", str(tiny_pt2), "--out", str(out), "--shape", "1x3x32x32",
                                "--max-batch", "2", "--class-names", "bg,a,b", "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["schema"] == "segdeploy.result" and doc["ok"] and doc["exit_code"] == 0 and doc["published"]
    assert set(doc["files"]) == {"model.onnx"} and doc["export_dir"] == str(out)
    res = doc["stages"]["export"]
    assert res["exporter"] in ("dynamo", "torchscript")
    assert res["dynamic_axes"] == ["batch", "height", "width"]
    assert res["verification"]["passed"] and len(res["verification"]["shapes"]) == 5  # max batch, max H/W apart
    assert _artifacts(out) == ["manifest.json", "model.onnx"]
    man = ExportDir.open(out).manifest
    assert man["source"]["format"] == "pt2" and man["model"]["class_names"] == ["bg", "a", "b"]
    assert man["model"]["spatial_multiple"] == 4
    model = onnx.load(str(out / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["segdeploy_source_sha256"] == man["source"]["sha256"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    # the file runs at a shape it was not traced at and matches the module it came from
    x = np.random.default_rng(0).standard_normal((3, 3, 40, 56)).astype(np.float32)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = tinymodels.tiny_seg()(torch.from_numpy(x)).detach().numpy()
    assert np.abs(sess.run(None, {"input": x})[0] - ref).max() < 1e-4
    assert "verify max" in stderr  # progress lines


def test_reexport_is_byte_identical(tmp_path, capsys):
    args = ["--model", "tinymodels:tiny_seg", "--model-arg", "num_classes=4", "--shape", "1x3x32x32", "--max-batch", "2", "-q"]
    assert _run(capsys, "export", "--out", str(tmp_path / "a"), *args)[0] == 0
    assert _run(capsys, "export", "--out", str(tmp_path / "b"), *args)[0] == 0
    for f in ("model.onnx", "manifest.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_verification_failure_leaves_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    # --min-shape given: the export rescue may not narrow it, so the run fails, naming what verified instead
    code, _, err = _run(capsys, "export", "--model", "tinymodels:ShapeBranch", "--out", str(out), "--shape", "1x3x64x64",
                        "--min-shape", "1x3x32x32", "--max-batch", "2", "-q")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: the graph traced at 64x64 is wrong at 32x32 (max abs error")
    assert "pass --spatial-multiple 64 --min-shape 1x3x64x64 --max-shape 2x3x128x128 (verified) instead of --min-shape" in line
    assert _artifacts(out) == []


def test_failed_export_keeps_previous_good_artifacts(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(capsys, "export", "--model", "tinymodels:tiny_seg", "--out", str(out), "--shape", "1x3x32x32",
                "--max-batch", "2", "-q")[0] == 0
    before = {f: (out / f).read_bytes() for f in _artifacts(out)}
    code, _, err = _run(capsys, "export", "--model", "tinymodels:ShapeBranch", "--out", str(out), "--shape", "1x3x64x64",
                        "--min-shape", "1x3x32x32", "--max-batch", "2", "-q")
    assert code == 1
    assert {f: (out / f).read_bytes() for f in _artifacts(out)} == before


@pytest.mark.parametrize(
    "extra, code, match",
    [
        (["--min-shape", "1x3x128x128"], 2, "min <= opt <= max"),
        (["--shape", "1x3x33x33"], 2, "does not accept --shape 1x3x33x33"),
        (["--shape", "1x1x32x32"], 2, "takes 3 channels"),
        (["--opset", "9"], 2, "--opset 9 is too old"),
        (["--mean", "1,2"], 2, "--mean needs 3"),
        (["--model-arg", "oops"], 2, "KEY=VALUE"),
        (["--class-names", "a,b"], 2, "lists 2 names but the model outputs 3"),
    ],
)
def test_bad_options(tmp_path, capsys, extra, code, match):
    out = tmp_path / "out"
    args = ["export", "--model", "tinymodels:tiny_seg", "--out", str(out), "--shape", "1x3x32x32", "-q", *extra]
    got, _, err = _run(capsys, *args)
    assert got == code, err
    assert match in err and len(err.strip().splitlines()) == 1
    assert _artifacts(out) == []


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "export", "--model", "tinymodels:tiny_seg", "--out", str(blocker / "sub"), "-q")
    assert code == 1 and "cannot create" in err
    code, _, err = _run(capsys, "export", "--model", "tinymodels:tiny_seg", "--out", str(blocker), "-q")
    assert code == 1 and "not a directory" in err


def test_model_errors_exit_codes(tmp_path, capsys, tiny):
    p = tmp_path / "m.pt"
    torch.save(tiny, p)
    code, _, err = _run(capsys, "export", str(p), "--out", str(tmp_path / "o"), "-q")
    assert code == 1 and "--trust-pickle" in err
    code, _, err = _run(capsys, "export", "--model", "tinymodels:Classifier", "--out", str(tmp_path / "o"), "-q")
    assert code == 1 and "classifier logits" in err
    code, _, err = _run(capsys, "export", "--out", str(tmp_path / "o"))
    assert code == 2 and "exactly one of MODEL_FILE or --model" in err
    code, _, err = _run(capsys, "export", "--model", "tinymodels:missing", "--out", str(tmp_path / "o"))
    assert code == 1 and "unknown factory" in err
    assert _artifacts(tmp_path / "o") == []


def test_reexport_of_pt2_is_byte_identical(tmp_path, capsys, tiny_pt2):
    """The dynamo path (used for .pt2 programs) must be as reproducible as the TorchScript one."""
    args = [str(tiny_pt2), "--shape", "1x3x32x32", "--max-batch", "2", "-q"]
    assert _run(capsys, "export", *args, "--out", str(tmp_path / "a"))[0] == 0
    assert _run(capsys, "export", *args, "--out", str(tmp_path / "b"))[0] == 0
    assert ExportDir.open(tmp_path / "a").manifest["onnx"]["exporter"] == "dynamo"
    for f in ("model.onnx", "manifest.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_export_engine_exposes_the_engine_build_group(tmp_path, capsys, tiny_pt2):
    """`export --engine` takes build's option group (all but --verbose), checked before anything is exported."""
    from click.testing import CliRunner

    from segdeploy.engine.cli_options import OPTION_NAMES
    from segdeploy.pipeline.cli import export_command

    help_text = CliRunner().invoke(export_command, ["--help"]).output
    assert all(opt in help_text for opt in OPTION_NAMES.values() if opt != "--verbose")
    out = tmp_path / "never"
    for args, text in [
        (["--workspace", "64", "--dla-core", "0"], "--workspace/--dla-core given without --engine; add --engine"),
        (["--engine", "--no-gpu-fallback"], "--no-gpu-fallback applies only with --dla-core N"),
        (["--engine", "--precision", "fp64"], "unknown --precision 'fp64'"),
    ]:
        code, _, err = _run(capsys, "export", str(tiny_pt2), "--out", str(out), "--shape", "1x3x32x32", *args)
        assert code == 2 and text in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not out.exists()
