"""`segdeploy inspect PATH`: export directories, ONNX models, PyTorch files (nothing unpickled) and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from segdeploy.cli import main
from segdeploy.inspect import inspect_path

ROOT = Path(__file__).resolve().parents[2]
PT2 = ROOT / "examples" / "shapes_unet.pt2"


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()


def run_json(capsys, *args) -> tuple[int, dict, str]:
    code = main(["inspect", *map(str, args), "--json"])
    cap = capsys.readouterr()
    return code, json.loads(cap.out), cap.err


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real export of the shipped example model (small profile)."""
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    out = tmp_path_factory.mktemp("inspect") / "exp"
    export_model(str(PT2), out, ExportOptions(shape="1x3x32x32", max_shape="2x3x64x64"))
    return out


@pytest.mark.slow
def test_export_directory_and_its_onnx(exported, capsys, tmp_path):
    assert main(["inspect", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "segdeploy export directory (all files intact)" in out and "6 classes" in out
    assert "opt 1x3x32x32 max 2x3x64x64" in out and "model.onnx" in out and out.rstrip().endswith("ok")
    code, doc, _ = run_json(capsys, exported / "model.onnx")
    rep = doc["stages"]["inspect"]
    assert code == 0 and rep["kind"] == "onnx" and rep["opset"]["ai.onnx"] >= 17
    assert rep["inputs"][0]["dynamic_axes"] == {"0": "batch", "2": "height", "3": "width"}
    assert rep["ops"]["Conv"] > 5 and rep["qdq"]["quantize"] == 0 and rep["plugin_nodes"] == {}
    assert rep["initializers"]["elements"] > 500_000 and rep["bytes"] == (exported / "model.onnx").stat().st_size
    # a modified and a missing file are reported, the command still succeeds (it describes, it does not gate)
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    code, doc, _ = run_json(capsys, copy)
    assert code == 0 and doc["stages"]["inspect"]["files"]["model.onnx"]["state"] == "modified"
    assert not doc["stages"]["inspect"]["intact"]
    os.unlink(copy / "model.onnx")
    os.mkfifo(copy / "model.onnx")
    assert inspect_path(copy)["files"]["model.onnx"]["state"] == "not a regular file"  # never waited on
    os.unlink(copy / "model.onnx")
    assert inspect_path(copy)["files"]["model.onnx"]["state"] == "missing"


def qdq_plugin_model(d: Path) -> Path:
    """Q/DQ (int8 zero points) around a Conv, a segdeploy plugin node and an external-data initializer."""
    w = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, np.float32), "w")
    s = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
             helper.make_node("Conv", ["dq", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("SegdeployMaxPoolWithIndices", ["c"], ["logits", "idx"], domain="segdeploy")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 64, 64])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, 32, 32])], [w, s, zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("segdeploy", 1)])
    path = d / "q.onnx"
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="q.onnx.data",
              size_threshold=64)
    return path


def test_onnx_qdq_plugins_and_external_data(tmp_path, capsys):
    path = qdq_plugin_model(tmp_path)
    code, doc, _ = run_json(capsys, path)
    rep = doc["stages"]["inspect"]
    assert code == 0 and rep["qdq"] == {"quantize": 1, "dequantize": 1, "types": {"int8": 1}}
    assert rep["plugin_nodes"] == {"SegdeployMaxPoolWithIndices": 1} and rep["opset"] == {"ai.onnx": 17, "segdeploy": 1}
    assert rep["inputs"][0]["dims"] == ["n", 3, 64, 64] and rep["inputs"][0]["dynamic_axes"] == {"0": "n"}
    assert rep["external_data"] == [{"location": "q.onnx.data", "tensors": 1, "present": True}]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Q/DQ:     1 QuantizeLinear, 1 DequantizeLinear (int8 1)" in out
    assert "plugins:  SegdeployMaxPoolWithIndices 1 (needs the segdeploy TensorRT plugin library)" in out
    os.unlink(tmp_path / "q.onnx.data")
    assert "external data: q.onnx.data (1 tensors, MISSING)" in (main(["inspect", str(path)]), capsys.readouterr().out)[1]


def test_pt2_read_without_loading(capsys, tmp_path):
    code, doc, _ = run_json(capsys, PT2)
    rep = doc["stages"]["inspect"]
    assert code == 0 and rep["format"] == "pt2" and rep["safe_to_load"]["safe"]
    dims = rep["example_input"]["dims"]
    assert [d["size"] for d in dims] == [2, 3, 128, 128] and dims[1] == {"size": 3}
    assert dims[2]["dynamic"] == "16*s76" and dims[2]["range"] == [16, 2048]
    assert rep["outputs"][0]["dims"][1] == {"size": 6}
    assert rep["weights"]["parameters"] == 838_870 and rep["output_type"] is None  # a plain tensor
    # an archive with an AOTInductor library is named unsafe (the loader would need --trust-pickle)
    aoti = tmp_path / "aoti.pt2"
    with zipfile.ZipFile(PT2) as src, zipfile.ZipFile(aoti, "w") as dst:
        root = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{root}/data/aotinductor/model.so", b"\x7fELF")
    rep = inspect_path(aoti)
    assert not rep["safe_to_load"]["safe"] and "--trust-pickle" in rep["safe_to_load"]["why"]


def test_torchscript_pickle_and_state_dict(tmp_path, capsys, monkeypatch):
    m = small_cnn()
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(m), tmp_path / "ts.pt")
    torch.save(m, tmp_path / "whole.pt")
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    torch.save(m.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    elements = sum(t.numel() for t in m.state_dict().values())
    # nothing may be unpickled: loading would call these
    monkeypatch.setattr("pickle.loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr("pickle.load", lambda *a, **k: pytest.fail("unpickled"))
    ts, whole, sd, legacy = (inspect_path(tmp_path / n) for n in ("ts.pt", "whole.pt", "sd.pt", "legacy.pt"))
    assert ts["format"] == "torchscript" and ts["safe_to_load"]["safe"]
    assert whole["format"] == "pickle" and not whole["safe_to_load"]["safe"]
    assert "torch.nn.modules.conv.Conv2d" in whole["safe_to_load"]["why"] and "--trust-pickle" in whole["safe_to_load"]["why"]
    assert sd["format"] == legacy["format"] == "state-dict" and sd["safe_to_load"]["safe"] and legacy["legacy"]
    for rep in (ts, whole, sd, legacy):
        assert rep["weights"]["elements"] == elements and rep["weights"]["tensors"] == len(m.state_dict())
    assert main(["inspect", str(tmp_path / "whole.pt")]) == 0
    assert "safe to load: NO: unpickling imports and calls" in capsys.readouterr().out


def _bad(tmp_path: Path) -> dict[str, Path]:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "plain").mkdir()
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    (tmp_path / "trunc.pt2").write_bytes(PT2.read_bytes()[:200_000])
    (tmp_path / "text.txt").write_text("hello\n")
    good = qdq_plugin_model(tmp_path).read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(good[: len(good) // 2])
    return {
        "fifo": "is a FIFO (named pipe), not a regular file", "plain": "is a directory without a manifest.json",
        "loop1": "is a symbolic link loop", "dangling": "is a link to a missing file", "missing": "not found",
        "trunc.pt2": "is a corrupt or truncated archive", "text.txt": "of unknown content",
        "trunc.onnx": "it is truncated or corrupt",
    }


def test_bad_inputs_are_one_line_exit_1(tmp_path):
    """In a subprocess with a timeout: a FIFO must never be waited on."""
    for name, expected in _bad(tmp_path).items():
        r = subprocess.run([sys.executable, "-m", "segdeploy", "inspect", str(tmp_path / name)], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 1, (name, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and expected in r.stderr, (name, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""
