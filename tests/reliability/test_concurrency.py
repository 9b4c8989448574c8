"""Two writers on one export directory: the second is refused with one line; readers see one complete set."""

from __future__ import annotations

import subprocess
import sys

from rhelpers import CALIB, env, one_error_line, run
from segdeploy.exportdir import ExportDir, Transaction


def _export(out, factory):
    return subprocess.Popen([sys.executable, "-m", "segdeploy", "export", "--model", f"rmodels:{factory}", "--out",
                             str(out), "--shape", "1x3x32x32", "--max-batch", "2", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def test_writer_holding_the_lock_refuses_another(good_export, tmp_path, capsys):
    import shutil

    out = tmp_path / "exp"
    shutil.copytree(good_export, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with Transaction(out, fresh=False, command="test"):
        code, _, err = run(capsys, "export", "--model", "rmodels:tiny_other", "--out", out, "--shape", "1x3x32x32", "-q")
        line = one_error_line(err)
        assert code == 1 and "another segdeploy run" in line and "is writing" in line
        p = subprocess.run([sys.executable, "-m", "segdeploy", "calibrate", str(out), "--calib", str(CALIB)],
                           capture_output=True, text=True, env=env())
        assert p.returncode == 1 and "another segdeploy run" in one_error_line(p.stderr)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_racing_exports_never_mix_models(tmp_path):
    """Two processes export different models into one directory at once: whatever wins, the directory is one
    complete, hash-consistent set from one of them (never model.onnx of one with the manifest of the other)."""
    out = tmp_path / "exp"
    for _ in range(3):
        a, b = _export(out, "tiny"), _export(out, "tiny_other")
        ra, rb = a.wait(timeout=300), b.wait(timeout=300)
        errs = a.stderr.read() + b.stderr.read()
        assert 0 in (ra, rb), errs
        for rc, proc_err in ((ra, errs), (rb, errs)):
            assert rc in (0, 1)
        if 1 in (ra, rb):
            assert "another segdeploy run" in errs
        ed = ExportDir.open(out)  # validates every file's sha256 against the manifest
        assert ed.manifest["source"]["sha256"] in {_source_sha("tiny"), _source_sha("tiny_other")}


def _source_sha(factory):
    from segdeploy.load import load_model

    return load_model(f"rmodels:{factory}").source_sha256
