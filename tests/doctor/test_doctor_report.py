"""The doctor report: schema, every probe guarded, capabilities decided from the probes."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from segdeploy.doctor import report as report_mod
from segdeploy.doctor.render import render_table
from segdeploy.platform import jetson, probe
from segdeploy.platform.probe import Probe

CAPS = ["export", "quantize", "build engines", "run engines", "build plugins"]


def _agx_orin_jp60(root):
    dt = root / "proc/device-tree"
    dt.mkdir(parents=True)
    (dt / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (dt / "compatible").write_bytes(b"nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00")
    (root / "etc").mkdir()
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic\n")
    return root


@pytest.fixture(scope="module")
def host_report():
    return report_mod.collect()


def test_schema_and_json(host_report):
    assert host_report["schema"] == "segdeploy.doctor" and host_report["schema_version"] == 1
    names = [n for n, _ in report_mod.PROBES] + [n for n, _ in report_mod.ROOTED_PROBES]
    assert set(host_report["probes"]) == set(names) | {"gpu", "dla", "plugin_library"}
    for p in host_report["probes"].values():
        assert set(p) == {"status", "value", "error", "note"} and p["status"] in ("ok", "absent", "error")
    assert [c["name"] for c in host_report["capabilities"]] == CAPS
    assert json.loads(json.dumps(host_report)) == host_report


def test_this_machine_cannot_build_engines(host_report):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("the tensorrt module is installed here")
    cap = {c["name"]: c for c in host_report["capabilities"]}["build engines"]
    assert cap["able"] in ("no", "partial")
    assert "TensorRT is not installed" in cap["detail"] or "not importable" in cap["detail"]
    assert "pip install tensorrt" in cap["hint"] or "python3-libnvinfer" in cap["hint"]
    table = render_table(host_report)
    assert re.search(r"^  build engines\s+(no|partial)\s+.*TensorRT", table, re.MULTILINE)
    assert "python3-libnvinfer" in table


def test_export_and_quantize_work_here(host_report):
    caps = {c["name"]: c["able"] for c in host_report["capabilities"]}
    assert caps["export"] == "yes" and caps["quantize"] == "yes"  # torch, onnx, onnxruntime are dependencies


def test_render_from_saved_json_is_identical(host_report, tmp_path):
    saved = tmp_path / "doctor.json"
    saved.write_text(json.dumps(host_report))
    assert render_table(json.loads(saved.read_text())) == render_table(host_report)


def test_broken_probe_becomes_an_error_field(monkeypatch):
    def boom():
        raise RuntimeError("onnx probe exploded")

    monkeypatch.setattr(probe, "probe_onnx", boom)
    rep = report_mod.collect()
    assert rep["probes"]["onnx"] == {"status": "error", "value": None, "error": "RuntimeError: onnx probe exploded",
                                     "note": None}
    caps = {c["name"]: c for c in rep["capabilities"]}
    assert caps["export"]["able"] == "no"
    assert "onnx fails (RuntimeError: onnx probe exploded)" in caps["export"]["detail"]
    assert "ERROR: RuntimeError: onnx probe exploded" in render_table(rep)


def test_probe_returning_garbage_is_an_error(monkeypatch):
    monkeypatch.setattr(probe, "probe_cmake", lambda: "3.25")
    assert report_mod.collect()["probes"]["cmake"]["error"] == "probe returned str, not a Probe"


def test_broken_jetson_detection_is_reported(monkeypatch):
    def boom(root="/"):
        raise OSError("device tree unreadable")

    monkeypatch.setattr(jetson, "detect", boom)
    rep = report_mod.collect()
    assert rep["jetson"] is None and rep["jetson_error"] == "OSError: device tree unreadable"
    assert "ERROR: OSError: device tree unreadable" in render_table(rep)
    assert rep["tensorrt_detected"]["tried"][-1] == "JetPack table: OSError: device tree unreadable"


def test_fake_jetson_root(tmp_path):
    rep = report_mod.collect(root=_agx_orin_jp60(tmp_path))
    j = rep["jetson"]
    assert (j["module"], j["jetpack"], j["tensorrt"], j["dla_cores"]) == ("Jetson AGX Orin 64GB", "6.0", "8.6.2", 2)
    assert rep["tensorrt_detected"]["version"] == "8.6.2" and rep["tensorrt_detected"]["exact"] is False
    dla = rep["probes"]["dla"]
    if rep["probes"]["tensorrt"]["status"] != "ok":
        assert dla["value"] == 2 and "table value" in dla["note"]
    table = render_table(rep)
    assert "Jetson AGX Orin 64GB (p3701-0005)" in table and "8.6.2 / CUDA 12.2 (JetPack table)" in table


# --- capabilities as a function of the probes ---------------------------------------------------------
def _results(**over) -> dict[str, Probe]:
    base = {
        "torch": Probe({"version": "2.5"}), "onnx": Probe("1.17"), "onnxruntime": Probe({"version": "1.20"}),
        "tensorrt": Probe(note="not installed"), "tensorrt_lean": Probe(note="not installed"),
        "trtexec": Probe(note="not found"), "gpu": Probe(note="no NVIDIA GPU visible"),
        "cuda_driver": Probe(note="libcuda.so.1 not loadable"), "nvcc": Probe("12.6.68"),
        "cmake": Probe("3.28"), "cxx": Probe("/usr/bin/c++"), "tensorrt_headers": Probe(note="NvInfer.h not found"),
    }
    base.update(over)
    return base


def _caps(results, detected=None, jetson=None) -> dict[str, dict]:
    detected = detected or {"version": None, "source": None, "exact": True, "tried": []}
    return {c["name"]: c for c in report_mod.capabilities(results, jetson, detected)}


GPU = Probe([{"name": "NVIDIA L4", "compute_capability": "8.9"}])
TRT = Probe({"version": "10.3.0", "has_builder": True})


def test_caps_full_trt_and_gpu():
    caps = _caps(_results(tensorrt=TRT, gpu=GPU, cuda_driver=Probe("12.6"),
                          tensorrt_headers=Probe({"dir": "/usr/include", "version": "10.3.0"})))
    assert {k: v["able"] for k, v in caps.items()} == dict.fromkeys(CAPS, "yes")
    assert caps["build engines"]["detail"] == "TensorRT 10.3.0 on NVIDIA L4"


def test_caps_trt_without_gpu():
    caps = _caps(_results(tensorrt=TRT, cuda_driver=Probe("12.6")))
    assert caps["build engines"]["able"] == "no"
    assert "no GPU visible (driver supports CUDA 12.6)" in caps["build engines"]["detail"]


def test_caps_no_trt_no_gpu_hint():
    caps = _caps(_results())
    be = caps["build engines"]
    assert be["able"] == "no" and be["detail"].startswith("TensorRT is not installed")
    assert be["hint"] == report_mod.TRT_INSTALL_HINT
    assert caps["run engines"]["detail"].startswith("no TensorRT runtime (tensorrt or tensorrt_lean)")


def test_caps_jetson_install_hint():
    jet = {"jetpack": "6.2", "tensorrt": "10.3.0"}
    orin_gpu = Probe([{"name": "Orin integrated GPU", "compute_capability": "8.7"}])
    be = _caps(_results(gpu=orin_gpu), jetson=jet)["build engines"]
    assert be["able"] == "no" and be["detail"] == "TensorRT is not installed"
    assert be["hint"] == ("on this Jetson: sudo apt install python3-libnvinfer libnvinfer-bin "
                          "(JetPack 6.2 ships TensorRT 10.3.0)")


def test_caps_trt_on_disk_but_not_importable():
    detected = {"version": "10.3.0", "source": "dpkg libnvinfer-bin", "exact": True, "tried": []}
    be = _caps(_results(gpu=GPU), detected)["build engines"]
    assert "TensorRT 10.3.0 is installed (dpkg libnvinfer-bin) but not importable" in be["detail"]
    assert "--system-site-packages" in be["hint"]


def test_caps_broken_trt_import():
    be = _caps(_results(gpu=GPU, tensorrt=Probe(error="ImportError: libnvinfer.so.10: cannot open")))["build engines"]
    assert be["able"] == "no" and "import tensorrt fails (ImportError: libnvinfer.so.10" in be["detail"]


def test_caps_trtexec_only_is_partial():
    be = _caps(_results(gpu=GPU, trtexec=Probe("/usr/src/tensorrt/bin/trtexec")))["build engines"]
    assert be["able"] == "partial" and "trtexec at /usr/src/tensorrt/bin/trtexec" in be["detail"]


def test_caps_lean_runtime_runs_engines():
    lean = Probe({"module": "tensorrt_lean_bindings", "version": "11.4.0.106"})
    caps = _caps(_results(gpu=GPU, tensorrt_lean=lean))
    assert caps["run engines"]["able"] == "yes" and "version-compatible engines only" in caps["run engines"]["detail"]
    assert caps["build engines"]["able"] == "no"


def test_caps_plugins():
    assert _caps(_results())["build plugins"]["able"] == "partial"
    old = _caps(_results(tensorrt_headers=Probe({"dir": "/usr/include", "version": "8.6.2"})))["build plugins"]
    assert old["able"] == "partial" and "older than 10" in old["detail"]
    no_nvcc = _caps(_results(nvcc=Probe(note="nvcc not found (...); install the CUDA toolkit")))["build plugins"]
    assert no_nvcc["able"] == "no" and no_nvcc["detail"] == "nvcc not found" and "CUDA toolkit" in no_nvcc["hint"]


def test_caps_missing_base_dependency():
    caps = _caps(_results(torch=Probe(note="not installed (pip install torch)")))
    assert caps["export"]["able"] == "no" and caps["export"]["detail"] == "torch is not installed"
