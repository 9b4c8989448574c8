"""`segdeploy build` where TensorRT is not importable (this machine, CI): trtexec commands, exit 1, nothing touched.

``import tensorrt`` is made to fail explicitly (``sys.modules["tensorrt"] = None``), so these tests say the same
on a machine that has TensorRT. The exports are real (examples/shapes_unet.pt2).
"""

from __future__ import annotations

import json
import shlex

import pytest
from build_helpers import TRTEXEC, hide_tensorrt, run_cli, snapshot, trtexec_lines

from segdeploy.exportdir import ExportDir

pytestmark = pytest.mark.slow  # the real exports the module uses take ~30 s to make (once per session)
PROFILE_FLAGS = ["--minShapes=input:1x3x64x64", "--optShapes=input:1x3x128x128", "--maxShapes=input:8x3x256x256"]


@pytest.fixture(autouse=True)
def _no_tensorrt(monkeypatch):
    hide_tensorrt(monkeypatch)


def _build(capsys, export_dir, *args):
    before = snapshot(export_dir)
    rc, out, err = run_cli(capsys, "build", export_dir, *args)
    assert snapshot(export_dir) == before  # byte-identical, no lock file or staging folder made beside it
    return rc, out, err


def _by_precision(out: str) -> dict[str, list[str]]:
    """precision -> argv of the printed trtexec command (the commands are preceded by '# <precision>: ...' lines;
    a setup command before ``&&`` is left out)."""
    cmds, current = {}, None
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("# "):
            current = s[2:].split(":", 1)[0]
        elif s in trtexec_lines(out):
            cmds[current] = shlex.split(s.rsplit(" && ", 1)[-1])
    return cmds


TIMING_CACHE_FLAG = "--timingCacheFile=timing.cache"


def test_build_without_tensorrt_prints_commands_then_one_error_line(capsys, fp32_export):
    rc, out, err = _build(capsys, fp32_export)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TensorRT is not installed")
    assert "trtexec command(s) printed on stdout" in lines[0] and "pip install tensorrt" in lines[0]
    assert "engine not built here" in out and str(fp32_export) in out
    (cmd,) = trtexec_lines(out)  # fp32 only: the directory holds no fp16/int8 ONNX
    # the default target (no TensorRT here): JetPack 6.2's 10.3.0, the target calibrate and bundle default to too;
    # trtexec where JetPack puts it (it is not on PATH there)
    assert shlex.split(cmd) == [TRTEXEC, "--onnx=model.onnx", "--saveEngine=model.fp32.plan", *PROFILE_FLAGS,
                                "--stronglyTyped",
                                "--timingCacheFile=timing.cache",  # one cache per device, reused by later builds
                                "--skipInference"]
    assert "TensorRT 10.3.0, JetPack 6.1-6.2.2; segdeploy's default target: --trt-target names yours" in out


@pytest.mark.parametrize("target", ["8.6", "10.3", "10.x", "11.x"])
def test_commands_per_target_version(capsys, int8_export, target):
    rc, out, err = _build(capsys, int8_export, "--trt-target", target, "--int8-implicit")
    if target == "11.x":  # TensorRT 11 has no implicit INT8: refused before anything is printed
        assert rc == 2 and out == ""
        assert err.count("\n") == 1 and "TensorRT 11.x has no implicit INT8" in err and "model.int8.onnx" in err
    if target == "10.x":  # the cache header names one version: a range cannot say which (defect 3)
        assert rc == 2 and out == "" and err.count("\n") == 1
        assert "not one version; give the device's exact version with --trt-target (e.g. 10.13.3)" in err
    if target == "8.6":  # the export wrote the default target's header (TRT-100300): TensorRT 8.6 would skip it
        assert rc == 1 and out == "" and err.count("\n") == 1
        assert "TRT-100300" in err and "reads only TRT-8602" in err and "--trt-target 8.6.2" in err
        rc, out, err = _build(capsys, int8_export, "--trt-target", target, "--int8-implicit", "--rewrite-calib-header")
    elif target in ("10.x", "11.x"):
        rc, out, err = _build(capsys, int8_export, "--trt-target", target)
    assert rc == 1 and err.count("\n") == 1
    cmds = _by_precision(out)
    expected = {"fp32", "fp16", "int8"} | ({"int8-implicit"} if target in ("8.6", "10.3") else set())
    assert set(cmds) == expected
    src = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "int8-implicit": "model.onnx"}
    for prec, argv in cmds.items():
        # paths relative to the export directory (run there, on the device)
        assert argv[0] == TRTEXEC and argv[1:3] == [f"--onnx={src[prec]}", f"--saveEngine=model.{prec}.plan"]
        assert argv[3:6] == PROFILE_FLAGS and argv[-1] == "--skipInference" and argv[-2] == TIMING_CACHE_FLAG
    flags = {p: set(a[6:-2]) for p, a in cmds.items()}
    if target == "8.6":  # weak typing: precision flags (INT8 with FP16); the re-stamped cache for implicit INT8
        assert flags == {"fp32": set(), "fp16": {"--fp16"}, "int8": {"--int8", "--fp16"},
                         "int8-implicit": {"--int8", "--fp16", "--calib=model.calib.trt8602.cache",
                                           "--optShapesCalib=input:1x3x128x128"}}
        (line,) = [c for c in trtexec_lines(out) if "--calib=" in c]
        assert line.startswith("sed '1s/^TRT-[0-9]*-/TRT-8602-/' model.calib.cache > model.calib.trt8602.cache && ")
    elif target in ("10.3", "10.x"):  # strongly typed for the fp32/fp16/int8 ONNX; implicit INT8 still weak
        assert {p: f for p, f in flags.items() if p != "int8-implicit"} == \
            {"fp32": {"--stronglyTyped"}, "fp16": {"--stronglyTyped"}, "int8": {"--stronglyTyped"}}
        if target == "10.3":
            assert flags["int8-implicit"] == {"--int8", "--fp16", "--calib=model.calib.cache",
                                              "--optShapesCalib=input:1x3x128x128"}
            assert "deprecated" in out
    else:  # 11.x: precision lives in the ONNX; the flags and --calib were removed
        assert flags == {"fp32": set(), "fp16": set(), "int8": set()}
        assert "--stronglyTyped" not in out and "--int8" not in out and "--fp16" not in out


def test_build_options_reach_the_commands(capsys, int8_export):
    rc, out, _ = _build(capsys, int8_export, "--trt-target", "10.3", "--precision", "fp16,int8", "--workspace", "2048",
                        "--opt-level", "4", "--dla-core", "0", "--version-compatible")
    assert rc == 1
    cmds = _by_precision(out)
    assert set(cmds) == {"fp16", "int8"}
    fp16 = cmds["fp16"]
    # DLA needs the weak precision flags, so --stronglyTyped is not used
    for flag in ("--fp16", "--memPoolSize=workspace:2048", "--builderOptimizationLevel=4", "--versionCompatible",
                 "--useDLACore=0", "--allowGPUFallback"):
        assert flag in fp16
    assert "--stronglyTyped" not in fp16 and {"--int8", "--fp16"} <= set(cmds["int8"])
    # DLA needs a static shape: every command's profile is the export's opt shape (defect 6)
    for argv in cmds.values():
        assert argv[3:6] == ["--minShapes=input:1x3x128x128", "--optShapes=input:1x3x128x128",
                             "--maxShapes=input:1x3x128x128"]


def test_json_document_carries_the_commands(capsys, int8_export):
    rc, out, err = _build(capsys, int8_export, "--trt-target", "8.6", "--json")
    assert rc == 1 and err.count("\n") == 1 and err.startswith("error: TensorRT is not installed")
    doc = json.loads(out)  # stdout is the JSON document only
    assert doc["schema"] == "segdeploy.result" and doc["command"] == "build"
    assert (doc["ok"], doc["exit_code"], doc["published"]) == (False, 1, False)
    assert doc["error"]["type"] == "MissingDependencyError"
    b = doc["stages"]["build"]
    assert b["built"] is False and b["reason"] == "TensorRT is not installed" and b["engines"] == []
    assert b["target"]["target"] == "8.6" and b["target"]["version"] == "8.6.2" and b["cwd"] == str(int8_export)
    assert [c["precision"] for c in b["commands"]] == ["fp32", "fp16", "int8"]
    int8 = next(c for c in b["commands"] if c["precision"] == "int8")
    assert int8["argv"][:3] == [TRTEXEC, "--onnx=model.int8.onnx", "--saveEngine=model.int8.plan"]
    assert "--int8" in int8["argv"] and int8["command"] == shlex.join(int8["argv"]) and int8["setup"] == []


def test_usage_and_directory_errors_are_one_line(capsys, fp32_export):
    """Usage errors: every one is a single line, exit 2 (bad values) or 1 (the directory lacks the file)."""
    cases = [
        (["--precision", "fp64"], 2, "unknown --precision 'fp64'; use one of fp32, fp16, int8, int8-implicit"),
        (["--precision", "fp16"], 1, "holds no model.fp16.onnx, which the fp16 engine is built from; run `segdeploy precision"),
        (["--opt-level", "9"], 2, "--opt-level must be 0..5"),
        (["--workspace", "0"], 2, "--workspace must be a positive number of MiB"),
        (["--trt-target", "9.1"], 2, "unknown TensorRT target '9.1'"),
        (["--dla-core", "0", "--trt-target", "11.x"], 2, "TensorRT 11.x has no DLA support"),
        (["--precision", "int8-implicit", "--trt-target", "11"], 2, "TensorRT 11.x has no implicit INT8"),
        (["--hardware-compat", "same-cc", "--trt-target", "10.3"], 2, "no hardware compatibility level same-compute"),
        # sameComputeCapability exists from 10.9: 10.4-10.8 reject it, so a 10.x range cannot promise it (defect 4)
        (["--hardware-compat", "same-cc", "--trt-target", "10.x"], 2, "give the device's exact TensorRT"),
        (["--dla-core", "0", "--trt-target", "10.13.3"], 2, "has no DLA support"),
        (["--trt-target", "jetpack-5.1"], 2, "JetPack 5.1 ships TensorRT 8.5.2, which segdeploy does not target"),
        (["--timing-cache", "/tmp", "--no-timing-cache"], 2, "contradict each other"),
        (["--no-gpu-fallback"], 2, "--no-gpu-fallback applies only with --dla-core"),
        (["--plugins", "/nonexistent/libx.so"], 2, "--plugins /nonexistent/libx.so does not exist"),
        (["--hardware-compat", "turing"], 2, "invalid value for '--hardware-compat'"),
    ]
    for args, code, text in cases:
        rc, _, err = _build(capsys, fp32_export, *args)
        assert (rc, err.count("\n")) == (code, 1), (args, err)
        assert text in err, (args, err)


def test_missing_or_foreign_directory(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "build", tmp_path / "nope")
    assert rc == 1 and "does not exist; run `segdeploy export MODEL --out" in err
    (tmp_path / "other").mkdir()
    rc, _, err = run_cli(capsys, "build", tmp_path / "other")
    assert rc == 1 and "holds no manifest.json" in err and err.count("\n") == 1


def test_library_result_without_tensorrt(fp32_export):
    from segdeploy.engine.request import BuildRequest
    from segdeploy.pipeline import build_directory

    res = build_directory(fp32_export, BuildRequest(trt_target="10.13.3"))
    assert res.built is False and res.engines == [] and [j.precision for j in res.jobs] == ["fp32"]
    s = res.summary()
    assert s["target"] == {"target": "10.x", "version": "10.13.3", "exact": True, "label": "TensorRT 10.13.3",
                           "example_version": "10.13.3", "jetpack": "JetPack 7.0-7.1", "origin": "--trt-target 10.13.3",
                           "calib_cache_code": 101303}
    assert json.loads(json.dumps(s)) == s
    assert "engines" not in ExportDir.open(fp32_export).manifest
