"""`segdeploy check` / `segdeploy merge` through the real CLI entry point: exit codes, files, messages."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from parity_helpers import export_onnx, make_dataset

from segdeploy.cli import main


@pytest.fixture(scope="module")
def setup(tiny_model, tiny_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    images, masks = make_dataset(root / "d", n=5)
    m = copy.deepcopy(tiny_model)
    with torch.no_grad():
        m.b.bias[1] += 0.3
    pert = export_onnx(m, root / "pert.onnx")
    return root, tiny_onnx, pert, str(images), str(masks)


def test_check_json_and_report_file(setup, capsys):
    root, ref, _, images, masks = setup
    out = root / "r.json"
    rc = main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--masks", masks,
               "--max-miou-drop", "0.1", "--report", str(out), "--json", "-q"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "segdeploy.result" and doc["command"] == "check" and doc["ok"] and doc["error"] is None
    printed = doc["stages"]["check"]
    assert printed == json.loads(out.read_text())
    assert printed["gate"]["passed"] is True and printed["metrics"]["drift"]["miou_points"] == 0.0
    assert printed["command"].startswith("segdeploy ")


def test_gate_trips_exit_3_and_report_still_written(setup, capsys):
    root, ref, pert, images, masks = setup
    out = root / "gate.json"
    rc = main(["check", "--reference", ref, "--candidate", pert, "--data", images, "--masks", masks,
               "--min-agreement", "99.5", "--report", str(out), "-q"])
    cap = capsys.readouterr()
    assert rc == 3
    assert "error: accuracy gate failed: pixel agreement" in cap.err and "\n" not in cap.err.strip()
    assert "gate: FAILED" in cap.out
    assert json.loads(out.read_text())["gate"]["passed"] is False


def test_shard_and_merge_cli(setup, capsys):
    root, ref, pert, images, masks = setup
    for i in range(2):
        assert main(["check", "--reference", ref, "--candidate", pert, "--data", images, "--masks", masks,
                     "--shard", f"{i}/2", "--report", str(root / f"s{i}.json"), "-q"]) == 0
    assert main(["merge", str(root / "s0.json"), str(root / "s1.json"), "--report", str(root / "m.json"),
                 "--max-miou-drop", "50"]) == 0
    merged = json.loads((root / "m.json").read_text())
    assert merged["dataset"]["num_evaluated"] == 5 and merged["gate"]["passed"] is True
    capsys.readouterr()
    assert main(["merge", str(root / "s0.json")]) == 1
    assert "missing [1]" in capsys.readouterr().err


def test_usage_and_data_errors_are_one_line(setup, tmp_path, capsys):
    root, ref, _, images, masks = setup
    assert main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--shard", "0/2"]) == 2
    assert "--shard needs --report" in capsys.readouterr().err
    assert main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--shard", "2/2",
                 "--report", str(tmp_path / "x.json")]) == 2
    capsys.readouterr()
    (tmp_path / "m").mkdir()
    out = tmp_path / "never.json"
    rc = main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--masks", str(tmp_path / "m"),
               "--report", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "without a mask" in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.glob(".never.json*")) == []  # nothing half-written
    assert main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--min-agreement", "0.99"]) == 2
    assert "looks like a fraction" in capsys.readouterr().err


def test_torch_model_file_reference(setup, tiny_model, tmp_path, capsys):
    root, ref, _, images, masks = setup
    ts = tmp_path / "ref.ts"
    torch.jit.save(torch.jit.trace(tiny_model, torch.zeros(1, 3, 8, 8)), str(ts))
    rc = main(["check", "--reference", str(ts), "--candidate", ref, "--data", images, "--masks", masks,
               "--max-miou-drop", "0.01", "--json", "-q"])
    rep = json.loads(capsys.readouterr().out)["stages"]["check"]
    assert rc == 0 and rep["reference"]["kind"] == "torch" and rep["metrics"]["agreement"]["pixel_accuracy"] > 0.999


def test_engine_candidate_without_tensorrt(setup, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed; the missing-TensorRT message cannot be shown")
    except ImportError:
        pass
    root, ref, _, images, masks = setup
    eng = tmp_path / "model.engine"
    eng.write_bytes(b"plan")
    rc = main(["check", "--reference", ref, "--candidate", str(eng), "--data", images, "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "needs TensorRT" in err and "pip install tensorrt" in err


def test_gate_with_json_prints_the_document_before_exit_3(setup, capsys):
    root, ref, pert, images, masks = setup
    rc = main(["check", "--reference", ref, "--candidate", pert, "--data", images, "--masks", masks,
               "--min-agreement", "99.5", "--json", "-q"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert rc == 3 and doc["exit_code"] == 3 and not doc["ok"] and doc["error"]["type"] == "GateError"
    assert doc["stages"]["check"]["gate"]["passed"] is False
    assert cap.err.count("\n") == 1 and cap.err.startswith("error: accuracy gate failed")


def test_report_paths_and_old_out_option(setup, tmp_path, capsys):
    root, ref, _, images, masks = setup
    rc = main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--report", str(tmp_path / "no" / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--report" in err and "does not exist" in err and err.count("\n") == 1
    rc = main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--html", str(tmp_path)])
    assert rc == 2 and "--html" in capsys.readouterr().err
    # --out means an export/bundle directory everywhere; check writes reports with --report
    rc = main(["check", "--reference", ref, "--candidate", ref, "--data", images, "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err == "error: no such option '--out'; check writes its JSON report with --report FILE\n"


def test_check_progress_names_each_model_as_it_loads(setup, capsys):
    """Plain lines on a non-TTY stderr: the factory reference, then the two runners, then the counted images."""
    root, ref, _, images, masks = setup
    rc = main(["check", "--model", "parity_helpers:TinySeg", "--candidate", ref, "--data", images, "--masks", masks])
    assert rc in (0, 3)  # a freshly built TinySeg vs the exported one: the gate's verdict is not the point here
    err = [l.split("] ", 1)[1] for l in capsys.readouterr().err.splitlines() if l.startswith("[")]
    assert err[:3] == ["check: building the reference, parity_helpers:TinySeg", "check: opening the reference, TinySeg",
                       "check: opening the candidate, tiny.onnx"], err
    assert err[-1].startswith("check: 5/5 images in ")
    assert main(["check", "--model", "parity_helpers:TinySeg", "--candidate", ref, "--data", images, "-q"]) in (0, 3)
    assert "[" not in capsys.readouterr().err
