"""Hand-edited or damaged export directories: every reader refuses them with one line (no traceback)."""

from __future__ import annotations

import json
import shutil

import pytest

from rhelpers import one_error_line, run


def _damage(src, dst, how):
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    if how == "onnx-bytes":
        (dst / "model.onnx").write_bytes((dst / "model.onnx").read_bytes()[:-10] + b"0123456789")
        return
    if how == "profile-null":
        doc["inputs"][0]["profile"] = None
    elif how == "classes-six":
        doc["model"]["num_classes"] = "six"
    elif how == "not-json":
        (dst / "manifest.json").write_text("{oops")
        return
    elif how == "missing-file":
        (dst / "model.onnx").unlink()
        return
    (dst / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("how, match", [
    ("onnx-bytes", "does not match the manifest"),
    ("profile-null", "profile must be an object"),
    ("classes-six", "num_classes must be int"),
    ("not-json", "not valid JSON"),
    ("missing-file", "is missing"),
])
def test_readers_refuse_damaged_directories(good_export, tmp_path, capsys, how, match):
    d = tmp_path / "exp"
    _damage(good_export, d, how)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(images / "a.png")
    for argv in (["calibrate", d, "--calib", images],
                 ["precision", d, "--model", "rmodels:tiny", "--fp16"],
                 ["check", "--model", "rmodels:tiny", "--candidate", d / "model.onnx", "--data", images]):
        code, _, err = run(capsys, *argv)
        line = one_error_line(err)
        assert code == 1 and match in line, (argv[0], err)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # a refused run changes nothing


def test_precision_refuses_another_model(good_export, tmp_path, capsys):
    d = tmp_path / "exp"
    shutil.copytree(good_export, d)
    code, _, err = run(capsys, "precision", d, "--model", "rmodels:tiny_other", "--fp16")
    assert code == 2 and "is not the model" in one_error_line(err)
