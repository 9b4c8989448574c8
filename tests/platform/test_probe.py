"""Probes on the real machine, and with fake tools (nvcc, nvidia-smi) and libraries where the result must be
known. Expectations are computed from independent sources (the modules themselves), never hard-coded."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segdeploy.platform import probe
from segdeploy.plugins.locate import PLUGIN_LIBRARY as PLUGINS_LIB
from segdeploy.plugins.locate import PLUGINS_ENV, find_library


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_status_of_a_probe():
    assert probe.Probe("1").status == "ok"
    assert probe.Probe(note="not installed").status == "absent"
    assert probe.Probe(error="x").status == "error"
    assert probe.Probe("1", note="n").to_dict() == {"status": "ok", "value": "1", "error": None, "note": "n"}


def test_guarded_turns_exceptions_into_errors():
    @probe.guarded
    def broken() -> probe.Probe:
        raise RuntimeError("boom\nsecond line")

    r = broken()
    assert r.status == "error" and r.error == "RuntimeError: boom second line" and r.value is None


def test_python_and_platform():
    assert probe.probe_python().value == platform.python_version()
    assert probe.probe_python().note == sys.executable
    assert probe.probe_platform().value["machine"] == platform.machine()


def test_versions_match_the_modules():
    import onnx
    import onnxruntime
    import torch

    import segdeploy

    assert probe.probe_segdeploy().value == segdeploy.__version__
    assert probe.probe_onnx().value == onnx.__version__
    ort = probe.probe_onnxruntime().value
    assert ort == {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    t = probe.probe_torch().value
    assert (t["version"], t["cuda_build"]) == (torch.__version__, torch.version.cuda)
    assert t["cuda_available"] == torch.cuda.is_available()


def test_tensorrt_probes_follow_what_is_installed():
    full = probe.probe_tensorrt()
    if importlib.util.find_spec("tensorrt") is None:
        assert full.status == "absent" and full.note == "not installed"
    else:
        assert full.status in ("ok", "error")
    lean = probe.probe_tensorrt_lean()
    names = [n for n in probe.LEAN_MODULES if importlib.util.find_spec(n) is not None]
    if not names:
        assert lean.status == "absent"
    elif lean.status == "ok":
        mod = __import__(names[0])
        assert lean.value == {"module": names[0], "version": mod.__version__}


def test_missing_module_is_absent_not_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    r = probe.probe_onnx()
    assert r.status == "absent" and "pip install onnx" in r.note


def test_nvcc_version_from_a_fake_nvcc(tmp_path, monkeypatch):
    nvcc = _script(tmp_path / "nvcc", 'echo "nvcc: NVIDIA (R) Cuda compiler driver"; '
                                      'echo "Cuda compilation tools, release 12.6, V12.6.68"')
    monkeypatch.setenv("CUDACXX", str(nvcc))
    r = probe.probe_nvcc()
    assert (r.value, r.note) == ("12.6.68", str(nvcc))


def test_failing_nvcc_is_an_error(tmp_path, monkeypatch):
    nvcc = _script(tmp_path / "nvcc", 'echo "nvcc fatal: broken install" >&2; exit 3')
    monkeypatch.setenv("CUDACXX", str(nvcc))
    r = probe.probe_nvcc()
    assert r.status == "error" and "exit 3" in r.error and "broken install" in r.error


def test_real_nvcc_when_present():
    r = probe.probe_nvcc()
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        assert r.status == "absent"
        return
    out = subprocess.run([r.note, "--version"], check=False, capture_output=True, text=True).stdout
    assert f"V{r.value}" in out


def test_cuda_driver_matches_libcuda_presence():
    r = probe.probe_cuda_driver()
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        assert r.status == "absent" and r.note.startswith("libcuda.so.1 not loadable: no NVIDIA driver")
    else:
        assert r.status == "ok" and re.fullmatch(r"\d+\.\d+", r.value) or "stub library" in (r.note or "")


def test_cuda_runtime_reports_torch_build():
    import torch

    r = probe.probe_cuda_runtime()
    if torch.version.cuda is not None:
        assert r.value["torch"] == torch.version.cuda


def test_gpu_from_fake_nvidia_smi(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA GPU here, so nvidia-smi is not consulted")
    _script(tmp_path / "bin" / "nvidia-smi", 'echo "NVIDIA H200, 9.0"; echo "NVIDIA L4, 8.9"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    r = probe.probe_gpu()
    assert r.note == "nvidia-smi"
    assert r.value == [{"name": "NVIDIA H200", "compute_capability": "9.0"},
                       {"name": "NVIDIA L4", "compute_capability": "8.9"}]


def test_gpu_falls_back_to_the_jetson_soc(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available() or shutil.which("nvidia-smi"):
        pytest.skip("a GPU is visible here through torch or nvidia-smi")
    r = probe.probe_gpu({"soc": "tegra234", "soc_name": "Orin", "compute_capability": "8.7"})
    assert r.value == [{"name": "Orin integrated GPU", "compute_capability": "8.7"}]
    assert "device tree" in r.note
    none = probe.probe_gpu(None)
    assert none.status == "absent" and "no NVIDIA GPU visible" in none.note


def test_dla_from_table_and_not_a_jetson():
    no_trt = probe.Probe(note="not installed")
    gpu = probe.Probe([{"name": "Orin integrated GPU", "compute_capability": "8.7"}])
    agx = {"module": "Jetson AGX Orin 64GB", "soc": "tegra234", "dla_cores": 2, "dla_confirmed": True}
    r = probe.probe_dla(no_trt, gpu, agx)
    assert r.value == 2 and "table value for Jetson AGX Orin 64GB" in r.note and "TensorRT is not importable" in r.note
    nx8 = {"module": "Jetson Orin NX 8GB", "soc": "tegra234", "dla_cores": 1, "dla_confirmed": False}
    assert "unconfirmed" in probe.probe_dla(no_trt, gpu, nx8).note
    unknown = probe.probe_dla(no_trt, gpu, {"module": "Jetson Orin NX", "dla_cores": None})
    assert unknown.status == "absent" and "unknown for Jetson Orin NX" in unknown.note
    host = probe.probe_dla(no_trt, probe.Probe(note="none"), None)
    assert host.value == 0 and "not a Jetson" in host.note


def test_tensorrt_headers(tmp_path, monkeypatch):
    monkeypatch.delenv("TensorRT_ROOT", raising=False)
    assert probe.probe_tensorrt_headers(tmp_path).status == "absent"
    inc = tmp_path / "usr/include/aarch64-linux-gnu"
    inc.mkdir(parents=True)
    (inc / "NvInfer.h").write_text("// stand-in\n")
    (inc / "NvInferVersion.h").write_text("#define NV_TENSORRT_MAJOR 10\n#define NV_TENSORRT_MINOR 3\n"
                                          "#define NV_TENSORRT_PATCH 0\n")
    assert probe.probe_tensorrt_headers(tmp_path).value == {"dir": str(inc), "version": "10.3.0"}
    trt_root = tmp_path / "trt"
    (trt_root / "include").mkdir(parents=True)
    (trt_root / "include/NvInfer.h").write_text("// stand-in\n")
    monkeypatch.setenv("TensorRT_ROOT", str(trt_root))
    assert probe.probe_tensorrt_headers(tmp_path).value == {"dir": str(trt_root / "include"), "version": None}


# --- plugin library ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_so(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a loadable shared library")
    d = tmp_path_factory.mktemp("so")
    (d / "x.c").write_text("int segdeploy_probe_test(void) { return 7; }\n")
    out = d / PLUGINS_LIB
    subprocess.run([cc, "-shared", "-fPIC", str(d / "x.c"), "-o", str(out)], check=True)
    return out


def test_plugin_library_explicit_file_loads(real_so, monkeypatch):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    r = probe.probe_plugin_library(real_so)
    assert r.value == {"path": str(real_so), "source": "--plugins", "loadable": True, "load_error": None}


def test_plugin_library_unloadable_reports_the_loader_error(tmp_path):
    bad = tmp_path / PLUGINS_LIB
    bad.write_bytes(b"not an ELF file")
    r = probe.probe_plugin_library(bad)
    assert r.status == "ok" and r.value["loadable"] is False
    assert r.value["load_error"] and str(bad) in r.value["load_error"]


def test_plugin_library_search_order(real_so, tmp_path, monkeypatch):
    build_lib = tmp_path / "build/segdeploy-plugins/lib"
    build_lib.mkdir(parents=True)
    shutil.copy(real_so, build_lib / PLUGINS_LIB)
    env_dir = tmp_path / "envdir"
    env_dir.mkdir()
    shutil.copy(real_so, env_dir / PLUGINS_LIB)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    found = find_library()
    assert (found.path, found.source) == (build_lib / PLUGINS_LIB, "default build dir")
    monkeypatch.setenv(PLUGINS_ENV, str(env_dir))
    found = find_library()
    assert (found.path, found.source) == (env_dir / PLUGINS_LIB, "$SEGDEPLOY_PLUGINS")
    found = find_library(real_so)
    assert (found.path, found.source) == (real_so, "--plugins")
    # a build dir whose library sits deeper (segdeploy/plugins/trt/) is found too
    deep = tmp_path / "other/segdeploy/plugins/trt"
    deep.mkdir(parents=True)
    shutil.copy(real_so, deep / PLUGINS_LIB)
    assert find_library(tmp_path / "other").path == deep / PLUGINS_LIB


def test_plugin_library_given_but_missing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    r = probe.probe_plugin_library(tmp_path / "nope")
    assert r.status == "error" and "not found via --plugins" in r.error and "does not exist" in r.error
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path))  # exists, holds no library
    r = probe.probe_plugin_library()
    assert r.status == "error" and "$SEGDEPLOY_PLUGINS" in r.error


def test_plugin_library_default_absent_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    r = probe.probe_plugin_library()
    assert r.status == "absent" and "segdeploy plugins build" in r.note


@pytest.mark.parametrize("rc,version,expected", [(0, 12060, ("ok", "12.6")), (0, 13000, ("ok", "13.0")),
                                                 (34, 0, ("absent", None)), (999, 0, ("error", None))])
def test_cuda_driver_with_a_fake_libcuda(tmp_path, rc, version, expected):
    """A stand-in libcuda.so.1 (found through LD_LIBRARY_PATH in a child process) drives every branch."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a stand-in libcuda.so.1")
    src = tmp_path / "cuda.c"
    src.write_text(f"int cuDriverGetVersion(int *v) {{ *v = {version}; return {rc}; }}\n")
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(tmp_path / "libcuda.so.1")], check=True)
    code = "import json; from segdeploy.platform.probe import probe_cuda_driver as p; print(json.dumps(p().to_dict()))"
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out)
    assert (r["status"], r["value"]) == expected
    if rc == 34:
        assert "stub library" in r["note"]
    if rc == 999:
        assert r["error"] == "cuDriverGetVersion returned CUresult 999"
