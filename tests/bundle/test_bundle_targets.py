"""`segdeploy bundle --deepstream` and `segdeploy bundle --target triton` (segdeploy.bundle.stage wiring
segdeploy.bundle.deepstream and segdeploy.bundle.triton): the files land in the staged bundle and are listed and
hashed in bundle.json, the DeepStream variant is checked on the sample images, the Triton repository serves the
end-to-end variant, and refusals are one line before anything is written."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from segdeploy.bundle import deepstream as ds
from segdeploy.bundle import triton
from segdeploy.cli import main

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT / "calibration" / "shapes" / "val"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The shipped example exported with --int8 --end-to-end (the validation split recorded, a calibration cache)."""
    d = tmp_path_factory.mktemp("bt") / "shapes"
    rc = main(["export", str(ROOT / "examples" / "shapes_unet.pt2"), "--out", str(d), "--shape", "1x3x128x128",
               "--class-names", "background,circle,square,triangle,ring,star", "--int8", "--calib",
               str(ROOT / "calibration" / "shapes" / "calib"), "--calib-size", "8", "--end-to-end", "-q"])
    assert rc == 0
    return d


def _listed_and_hashed(out: Path) -> dict:
    doc = json.loads((out / "bundle.json").read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == set(doc["files"]) | {"bundle.json"}
    for rel, meta in doc["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == meta["sha256"], rel
    return doc


@pytest.mark.slow
def test_deepstream_files_in_the_bundle(example, tmp_path, capsys):
    out = tmp_path / "shapes-orin"
    assert main(["bundle", str(example), "--out", str(out), "--deepstream", "--num-samples", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "deepstream deepstream/config_infer_primary_segdeploy.txt (int8" in stdout and "class agreement" in stdout
    doc = _listed_and_hashed(out)
    d = doc["deepstream"]
    assert d["precision"] == "int8" and d["directory"] == "deepstream"
    # INT8: a last-bit difference of the normalised input can cross a quantization step (a few pixels, gated)
    assert d["check"]["class_agreement"] >= d["min_agreement"] == 0.999 and d["check"]["max_abs_diff"] < 0.1
    cfg = ds.parse_config((out / "deepstream" / ds.CONFIG_FILE).read_text())
    assert cfg["network-mode"] == "1" and cfg["onnx-file"] == "model.int8.deepstream.onnx"
    for key in ("onnx-file", "int8-calib-file", "labelfile-path"):  # relative to the config: inside the bundle
        assert (out / "deepstream" / cfg[key]).resolve().is_file(), key
    assert (out / "deepstream" / cfg["int8-calib-file"]).resolve() == (out / "calib" / "model.calib.cache").resolve()
    assert (out / "deepstream" / ds.LABELS_FILE).read_text().split() == [
        "background", "circle", "square", "triangle", "ring", "star"]
    with tarfile.open(out.parent / "shapes-orin.tar.gz") as tar:
        assert "shapes-orin/deepstream/config_infer_primary_segdeploy.txt" in tar.getnames()
    # without --deepstream the bundle has no deepstream/ (a rebundle replaces the earlier one)
    assert main(["bundle", str(example), "--out", str(out), "--num-samples", "1", "-q"]) == 0
    assert not (out / "deepstream").exists() and json.loads((out / "bundle.json").read_text())["deepstream"] is None


@pytest.mark.slow
def test_triton_target_writes_the_model_repository(example, tmp_path, capsys):
    out = tmp_path / "repo"
    assert main(["bundle", str(example), "--out", str(out), "--target", "triton", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)["stages"]["bundle"]
    assert res["target"]["key"] == "triton"
    models = res["triton"]["models"]
    assert models["shapes"] == {"backend": "onnxruntime", "onnx": "model.e2e.onnx", "end_to_end": True}
    assert models["shapes_tensorrt"]["onnx"] == "model.int8.e2e.onnx"  # the plan: the best precision the export has
    doc = _listed_and_hashed(out)
    assert not (out / "runtime").exists() and not (out / "samples").exists()  # not a device bundle
    for name in ("shapes", "shapes_tensorrt"):
        assert (out / name / "config.pbtxt").is_file() and (out / name / triton.LABELS_FILE).is_file()
    assert (out / "shapes" / "1" / triton.SERVED_FILE).read_bytes() == (example / "model.e2e.onnx").read_bytes()
    assert (out / triton.BUILD_SCRIPT).stat().st_mode & 0o111 and doc["triton"]["name"] == "shapes"
    assert 'data_type: TYPE_UINT8' in (out / "shapes" / "config.pbtxt").read_text()
    # the terminal summary
    assert main(["bundle", str(example), "--out", str(out), "--target", "triton", "--no-archive", "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "Triton model repository" in stdout and "(end-to-end)" in stdout and "TYPE_UINT8" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("extra, match", [
    (["--target", "triton", "--deepstream"], "--deepstream applies to a device bundle, not to --target triton"),
    (["--target", "triton", "--version-compatible"], "--version-compatible applies to a device bundle"),
    (["--target", "triton", "--precision", "int8-implicit"], "--target triton serves ONNX models"),
    (["--deepstream", "--precision", "fp16"], "the export holds no fp16 model"),
])
def test_refusals_are_one_line_and_write_nothing(example, tmp_path, capsys, extra, match):
    out = tmp_path / "b"
    code = main(["bundle", str(example), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "b.tar.gz").exists()


@pytest.mark.slow
def test_deepstream_fp32_variant_matches_exactly_and_a_disagreeing_one_publishes_nothing(example, tmp_path, capsys,
                                                                                         monkeypatch):
    out = tmp_path / "fp32"
    assert main(["bundle", str(example), "--out", str(out), "--deepstream", "--precision", "fp32", "--num-samples", "2",
                 "--no-archive", "--json", "-q"]) == 0
    d = json.loads(capsys.readouterr().out)["stages"]["bundle"]["deepstream"]
    assert d["precision"] == "fp32" and d["check"]["class_agreement"] == 1.0 and d["check"]["max_abs_diff"] < 1e-4
    real = ds.verify_variant
    monkeypatch.setattr(ds, "verify_variant", lambda *a, **k: {**real(*a, **k), "class_agreement": 0.5})
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["bundle", str(example), "--out", str(out), "--deepstream", "--precision", "fp32", "--num-samples", "2",
                 "--no-archive", "-q"]) == 1
    err = capsys.readouterr().err
    assert "agrees with model.onnx on only 50.00%" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # the earlier bundle is kept
