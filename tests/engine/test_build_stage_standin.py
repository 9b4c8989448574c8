"""The build stage's bookkeeping where TensorRT is importable, through the strict TensorRT stand-in.

No engine is built here. ``import tensorrt`` returns tests/trt/standin.py's module for one recorded TensorRT
version; it checks every API call against that version's recorded surface and never builds: only the result of
its ``build_serialized_network`` (None) is replaced with a handcrafted plan *header* (``ftrt`` + the version at
bytes 24..27, zero padding; see build_helpers.install_standin). What is tested is segdeploy's side: which ONNX
each engine is built from, the files it stages and lists (kind, derived_from), the manifest ``engines`` entries,
replace-on-rebuild, retirement when the source ONNX changes, refusals, and that a failure publishes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from build_helpers import (
    install_standin,
    make_plugin_export,
    one_error,
    run_cli,
    snapshot,
    trtexec_lines,
)

from segdeploy.exportdir import ExportDir
from segdeploy.plugins.locate import PLUGINS_ENV

pytestmark = pytest.mark.slow  # the real exports the module uses take ~30 s to make (once per session)
ROOT = Path(__file__).resolve().parents[2]
CALIB = ROOT / "calibration" / "shapes" / "calib"


def parsed(trt) -> list[str]:
    """Names of the ONNX files the stand-in's parser read, in order."""
    return [Path(a[0]).name for a, _ in trt._standin.called("OnnxParser.parse_from_file")]


def test_build_stages_lists_and_describes_every_engine(capsys, monkeypatch, int8_export, copy_export, tmp_path):
    d = copy_export(int8_export)
    trt = install_standin(monkeypatch, "10.16")
    rc, out, err = run_cli(capsys, "build", d, "--timing-cache", tmp_path / "tc")
    assert rc == 0, err
    assert "built 3 engine(s) with TensorRT 10.16.0.0" in out and trtexec_lines(out) == []
    assert parsed(trt) == ["model.onnx", "model.fp16.onnx", "model.int8.onnx"]
    ed = ExportDir.open(d)  # validates the schema and every file's sha256
    files, m = ed.files, ed.manifest
    src = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
    assert [e["precision"] for e in m["engines"]] == ["fp32", "fp16", "int8"]
    for e in m["engines"]:
        name, p = e["file"], e["precision"]
        assert name == f"model.{p}.engine" and files[name].kind == "engine"
        assert files[name].derived_from == {src[p]: files[src[p]].sha256}
        assert (e["sha256"], e["bytes"]) == (files[name].sha256, files[name].bytes)
        assert (e["source_onnx"], e["source_sha256"]) == (src[p], files[src[p]].sha256)
        assert e["tensorrt"] == {"version": "10.16.0.0", "plan_header": [10, 16, 0, 0]}
        assert e["recipe"]["network_flags"] == ["STRONGLY_TYPED"] and e["recipe"]["builder_flags"] == []
        assert e["profile"]["opt"] == [1, 3, 128, 128] and e["input"] == "input" and e["plugins"] is None
        assert e["parity"] is None and e["gpu"].keys() == {"name", "compute_capability"}
        plan = (d / name).read_bytes()
        assert plan[:4] == b"ftrt" and tuple(plan[24:28]) == (10, 16, 0, 0)  # the stand-in's header, stored as is
    assert len({e["sha256"] for e in m["engines"]}) == 3
    assert list((tmp_path / "tc").glob("trt-10.16.0.0-*.timing-cache"))  # the timing cache was saved
    # inspect reads the header and the manifest entry
    rc, out, _ = run_cli(capsys, "inspect", d / "model.int8.engine", "--json")
    rep = json.loads(out)["stages"]["inspect"]
    assert rc == 0 and rep["tensorrt_version"] == "10.16.0.0" and rep["manifest"]["sha256_matches"] is True
    assert rep["manifest"]["entry"]["source_onnx"] == "model.int8.onnx"


def test_json_document_of_a_build(capsys, monkeypatch, fp32_export, copy_export):
    d = copy_export(fp32_export)
    install_standin(monkeypatch, "11.1")
    rc, out, err = run_cli(capsys, "build", d, "--json", "--no-timing-cache", "--workspace", "512")
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert (doc["ok"], doc["published"], doc["exit_code"]) == (True, True, 0)
    b = doc["stages"]["build"]
    assert b["built"] is True and b["tensorrt"] == "11.1.0.0" and b["commands"] == []
    (e,) = b["engines"]
    assert e["recipe"]["workspace_bytes"] == 512 << 20 and e["build_options"]["workspace_mib"] == 512
    assert doc["files"]["model.fp32.engine"]["kind"] == "engine" and b["timing_cache"] is None


@pytest.mark.filterwarnings(r"ignore:.*is deprecated \(stand-in\):DeprecationWarning")  # 10.x calibrator API
def test_rebuild_replaces_the_entry_and_recalibration_retires_engines(capsys, monkeypatch, int8_export, copy_export):
    d = copy_export(int8_export)
    install_standin(monkeypatch, "10.3.0")  # the export's calibration cache header is TRT-100300: it matches
    rc, out, err = run_cli(capsys, "build", d, "--int8-implicit", "--no-timing-cache", "-q")
    assert rc == 0, err
    first = {e["precision"]: e for e in ExportDir.open(d).manifest["engines"]}
    assert list(first) == ["fp32", "fp16", "int8", "int8-implicit"]
    imp = first["int8-implicit"]
    assert imp["recipe"]["builder_flags"] == ["INT8"] and imp["recipe"]["calibrator"] is True
    assert imp["calibration_cache"]["file"] == "model.calib.cache" and imp["source_onnx"] == "model.onnx"
    assert set(ExportDir.open(d).files["model.int8-implicit.engine"].derived_from) == {"model.onnx", "model.calib.cache"}
    assert any("deprecated" in w for w in imp["warnings"])

    rc, out, err = run_cli(capsys, "build", d, "--precision", "int8", "--opt-level", "4", "--no-timing-cache", "-q")
    assert rc == 0, err
    second = {e["precision"]: e for e in ExportDir.open(d).manifest["engines"]}
    assert list(second) == list(first)  # replaced, not appended
    assert second["int8"]["build_options"]["optimization_level"] == 4 and second["int8"]["sha256"] != first["int8"]["sha256"]
    assert all(second[p] == first[p] for p in ("fp32", "fp16", "int8-implicit"))

    # new ranges -> new model.calib.cache; model.int8.onnx and model.fp16.onnx (made from the ranges) are retired,
    # and with them every engine built from them; the fp32 engine (from model.onnx) stays
    rc, out, err = run_cli(capsys, "calibrate", d, "--calib", CALIB, "--calib-size", "4", "--seed", "1", "-q")
    assert rc == 0, err
    ed = ExportDir.open(d)
    assert [e["precision"] for e in ed.manifest["engines"]] == ["fp32"] and ed.manifest["engines"][0] == first["fp32"]
    for gone in ("model.int8.onnx", "model.fp16.onnx", "model.int8.engine", "model.fp16.engine",
                 "model.int8-implicit.engine"):
        assert gone not in ed.files and not (d / gone).exists()
    assert "removed model.int8-implicit.engine" in out + err


def test_int8_implicit_cache_header_is_checked_first(capsys, monkeypatch, int8_export, copy_export):
    d = copy_export(int8_export)
    trt = install_standin(monkeypatch, "8.6.1")
    before = snapshot(d)
    rc, _, err = run_cli(capsys, "build", d, "--precision", "int8-implicit", "--no-timing-cache")
    assert rc == 1 and one_error(err) and snapshot(d)["files"] == before["files"]
    assert "written for TensorRT 10.3.0 (TRT-100300)" in err and "--rewrite-calib-header" in err
    assert trt._standin.calls == []  # refused before any TensorRT object was made
    rc, _, err = run_cli(capsys, "build", d, "--precision", "int8-implicit", "--rewrite-calib-header",
                         "--no-timing-cache", "-q")
    assert rc == 0, err
    (e,) = ExportDir.open(d).manifest["engines"]
    assert e["calibration_cache"]["header_rewritten_from"] == 100300 and e["calibration_cache"]["version_code"] == 8601
    assert e["recipe"]["network_flags"] == ["EXPLICIT_BATCH"] and e["tensorrt"]["plan_header"] == [8, 6, 1, 0]
    (args, _), = trt._standin.called("calibrator.read_calibration_cache->")
    assert args[0].split(b"\n")[0] == b"TRT-8601-EntropyCalibration2"  # TensorRT got the rewritten header
    assert (d / "model.calib.cache").read_text().startswith("TRT-100300-")  # the file is untouched


def test_failures_publish_nothing(capsys, monkeypatch, int8_export, copy_export):
    d = copy_export(int8_export)
    before = snapshot(d)
    # the third build (int8) fails at parse time: the fp32 and fp16 engines staged before it are not published
    trt = install_standin(monkeypatch, "10.16", unsupported_ops={"QuantizeLinear"})
    rc, _, err = run_cli(capsys, "build", d, "--no-timing-cache")
    assert rc == 1 and one_error(err)
    assert "cannot parse model.int8.onnx" in err and "(QuantizeLinear)" in err
    assert parsed(trt) == ["model.onnx", "model.fp16.onnx", "model.int8.onnx"]
    assert snapshot(d)["files"] == before["files"]
    # no GPU / driver: TensorRT cannot make a builder
    install_standin(monkeypatch, "10.16", cuda=False)
    rc, _, err = run_cli(capsys, "build", d, "--no-timing-cache")
    assert rc == 1 and "could not create a builder" in err and "CUDA initialization failure" in err
    # TensorRT 11 has no implicit INT8
    install_standin(monkeypatch, "11.1")
    rc, _, err = run_cli(capsys, "build", d, "--int8-implicit", "--no-timing-cache")
    assert rc == 2 and "has no implicit INT8" in err and "model.int8.onnx" in err
    assert snapshot(d)["files"] == before["files"]


def test_plugin_model(capsys, monkeypatch, fp32_export, tmp_path):
    d = make_plugin_export(fp32_export, tmp_path / "plug" / "shapes")
    lib = tmp_path / "libsegdeploy_trt_plugins.so"
    lib.write_bytes(b"\x7fELF placeholder: the stand-in's registry records the path, it never loads it")
    # without TensorRT: the command builds model.trt.onnx with the plugin library
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    rc, out, _ = run_cli(capsys, "build", d, "--trt-target", "10.3")
    (cmd,) = trtexec_lines(out)
    assert rc == 1 and "--onnx=model.trt.onnx" in cmd and "--dynamicPlugins=libsegdeploy_trt_plugins.so" in cmd
    rc, _, err = run_cli(capsys, "build", d, "--trt-target", "8.6")
    assert rc == 2 and "TensorRT 8.6 has no IPluginV3" in err
    # with TensorRT: the plugin library is looked up ($SEGDEPLOY_PLUGINS here); none there -> one line naming the fix
    trt = install_standin(monkeypatch, "10.16")
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "no-plugins-here"))
    rc, _, err = run_cli(capsys, "build", d, "--no-timing-cache")
    assert rc == 2 and "needs segdeploy's TensorRT plugin library" in err and "--plugins PATH" in err
    assert "not found via $SEGDEPLOY_PLUGINS" in err and err.count("\n") == 1
    rc, _, err = run_cli(capsys, "build", d, "--precision", "int8", "--plugins", lib)
    assert rc == 2 and "maps only the FP32 graph" in err and "--precision fp32" in err
    rc, out, err = run_cli(capsys, "build", d, "--plugins", lib, "--no-timing-cache", "-q")
    assert rc == 0, err
    assert parsed(trt) == ["model.trt.onnx"]
    (args, _), = trt._standin.called("IPluginRegistry.load_library")
    assert args == (str(lib),)  # loaded before parsing
    ed = ExportDir.open(d)
    (e,) = ed.manifest["engines"]
    assert e["plugins"] == "libsegdeploy_trt_plugins.so" and e["source_onnx"] == "model.trt.onnx"
    assert e["plugin_creators"] == ["segdeploy::SegdeployMaxPoolWithIndices v1", "segdeploy::SegdeployMaxUnpool v1"]
    assert ed.files["model.fp32.engine"].derived_from == {"model.trt.onnx": ed.files["model.trt.onnx"].sha256}


def test_check_plugins_option_resolution(fp32_export, tmp_path, monkeypatch):
    """`segdeploy check --plugins`: given path wins; else the manifest beside the engine decides."""
    from segdeploy.errors import UsageError
    from segdeploy.plugins import library_for_engine

    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    d = make_plugin_export(fp32_export, tmp_path / "plug" / "shapes")
    assert library_for_engine(d / "model.fp32.engine", str(lib)) == str(lib)
    with pytest.raises(UsageError, match="--plugins .*missing.so does not exist"):
        library_for_engine(d / "model.fp32.engine", str(tmp_path / "missing.so"))
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "no-plugins-here"))
    # an engine the manifest does not list (a trtexec build) of a plugin model: the located library if any
    assert library_for_engine(d / "model.fp32.plan") is None
    monkeypatch.setenv(PLUGINS_ENV, str(lib))
    assert library_for_engine(d / "model.fp32.plan") == str(lib)
    assert library_for_engine(fp32_export / "model.fp32.plan") is None  # no plugins in that model
    assert library_for_engine(tmp_path / "elsewhere.engine") is None  # no manifest beside it
    # a listed engine whose entry names the library, none found -> one line naming --plugins
    doc = json.loads((d / "manifest.json").read_text())
    doc["engines"] = [{"file": "model.fp32.engine", "plugins": "libsegdeploy_trt_plugins.so"}]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(doc))
    assert library_for_engine(tmp_path / "m" / "model.fp32.engine") == str(lib)
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "no-plugins-here"))
    with pytest.raises(UsageError, match="needs the plugin library libsegdeploy_trt_plugins.so .*pass --plugins PATH"):
        library_for_engine(tmp_path / "m" / "model.fp32.engine")
    with pytest.raises(UsageError, match="needs the plugin library"):  # --manifest DIR names the same manifest
        library_for_engine(d / "model.fp32.engine", manifest=tmp_path / "m")


def test_check_refuses_plugins_for_an_onnx_candidate(capsys, fp32_export, tmp_path):
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    rc, _, err = run_cli(capsys, "check", "--reference", ROOT / "examples" / "shapes_unet.pt2", "--candidate",
                         fp32_export / "model.onnx", "--data", ROOT / "calibration" / "shapes" / "val" / "images",
                         "--plugins", lib)
    assert rc == 2 and "--plugins applies to a TensorRT engine candidate" in err
