"""Collect the doctor report: every probe, the Jetson facts, and what this machine can do.

Contract:
    ``collect(plugins=None, root="/")`` -> a JSON-serializable dict, schema ``segdeploy.doctor`` version 1::

        {"schema": "segdeploy.doctor", "schema_version": 1,
         "probes": {<name>: {"status": "ok"|"absent"|"error", "value", "error", "note"}, ...},
         "jetson": JetsonInfo dict or null,
         "tensorrt_detected": {"version", "source", "exact", "tried"},
         "capabilities": [{"name", "able": "yes"|"no"|"partial", "detail", "hint"}, ...],
         "jetson_error": "<Type>: <text>"   (only when the Jetson detection itself raised)}

    Probe names (in order): :data:`PROBES`, :data:`ROOTED_PROBES`, then ``gpu``, ``dla``, ``plugin_library``.
    Capabilities, in order: export, quantize, build engines, run engines, build plugins. Each probe runs
    guarded: an exception in a probe (or in the Jetson/TensorRT detection) becomes that entry's ``error``
    and collection goes on. ``plugins`` is the ``--plugins`` path (file or directory). ``root`` is the
    filesystem root for the Jetson and TensorRT-version detection (tests pass a fake tree).
Raises nothing for a probe's failure; a bug outside the probes propagates (the CLI turns it into exit 1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segdeploy.platform import jetson as jetson_mod
from segdeploy.platform import probe, tensorrt_version

SCHEMA_NAME = "segdeploy.doctor"
SCHEMA_VERSION = 1

# name -> probe function name in segdeploy.platform.probe (looked up at call time)
PROBES: tuple[tuple[str, str], ...] = (
    ("segdeploy", "probe_segdeploy"),
    ("python", "probe_python"),
    ("platform", "probe_platform"),
    ("torch", "probe_torch"),
    ("onnx", "probe_onnx"),
    ("onnxruntime", "probe_onnxruntime"),
    ("tensorrt", "probe_tensorrt"),
    ("tensorrt_lean", "probe_tensorrt_lean"),
    ("trtexec", "probe_trtexec"),
    ("nvcc", "probe_nvcc"),
    ("cmake", "probe_cmake"),
    ("cxx", "probe_cxx"),
    ("cuda_driver", "probe_cuda_driver"),
    ("cuda_runtime", "probe_cuda_runtime"),
)
# probes that take the filesystem root
ROOTED_PROBES: tuple[tuple[str, str], ...] = (("tensorrt_headers", "probe_tensorrt_headers"),)

TRT_INSTALL_HINT = "pip install tensorrt on an x86 CUDA machine, or JetPack's python3-libnvinfer on a Jetson"


def _safe(fn: Callable[..., probe.Probe], *args) -> probe.Probe:
    try:
        result = fn(*args)
    except Exception as e:  # probes are guarded already; this also covers a replaced/broken probe
        return probe.Probe(error=probe.one_line(e))
    if not isinstance(result, probe.Probe):
        return probe.Probe(error=f"probe returned {type(result).__name__}, not a Probe")
    return result


def collect(plugins: str | Path | None = None, root: str | Path = "/") -> dict:
    """Run every probe; see the module docstring."""
    results: dict[str, probe.Probe] = {name: _safe(getattr(probe, fn)) for name, fn in PROBES}
    results.update({name: _safe(getattr(probe, fn), root) for name, fn in ROOTED_PROBES})
    jetson_err = None
    try:
        info = jetson_mod.detect(root)
        jetson = info.to_dict() if info is not None else None
    except Exception as e:
        jetson, jetson_err = None, probe.one_line(e)
    results["gpu"] = _safe(probe.probe_gpu, jetson)
    results["dla"] = _safe(probe.probe_dla, results["tensorrt"], results["gpu"], jetson)
    results["plugin_library"] = _safe(probe.probe_plugin_library, plugins)
    try:
        detected = tensorrt_version.detect_tensorrt_version(root).to_dict()
    except Exception as e:
        detected = {"version": None, "source": None, "exact": True,
                    "tried": [f"detection failed: {probe.one_line(e)}"]}
    report = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "probes": {k: v.to_dict() for k, v in results.items()},
        "jetson": jetson,
        "tensorrt_detected": detected,
        "capabilities": capabilities(results, jetson, detected),
    }
    if jetson_err:
        report["jetson_error"] = jetson_err
    return report


# --- capabilities -------------------------------------------------------------------------------------
def _cap(name: str, able: str, detail: str, hint: str | None = None) -> dict:
    return {"name": name, "able": able, "detail": detail, "hint": hint}


def _missing(results: dict[str, probe.Probe], names: tuple[str, ...]) -> list[str]:
    out = []
    for n in names:
        r = results[n]
        if r.status == "absent":
            out.append(f"{n} is not installed")
        elif r.status == "error":
            out.append(f"{n} fails ({r.error})")
    return out


def _gpu_reason(results: dict[str, probe.Probe]) -> str:
    drv = results["cuda_driver"]
    if drv.status != "ok":
        return "no NVIDIA driver (libcuda) and no GPU visible"
    return f"no GPU visible (driver supports CUDA {drv.value})"


def _install_hint(jetson: dict | None) -> str:
    if jetson is None:
        return TRT_INSTALL_HINT
    ships = (f" (JetPack {jetson['jetpack']} ships TensorRT {jetson['tensorrt']})"
             if jetson.get("jetpack") and jetson.get("tensorrt") else "")
    return f"on this Jetson: sudo apt install python3-libnvinfer libnvinfer-bin{ships}"


def _trt_not_importable(results: dict[str, probe.Probe], detected: dict,
                        jetson: dict | None = None) -> tuple[str, str]:
    """(reason, hint) when ``import tensorrt`` does not give a builder."""
    trt = results["tensorrt"]
    if trt.status == "error":
        return f"import tensorrt fails ({trt.error})", f"reinstall TensorRT: {TRT_INSTALL_HINT}"
    if trt.status == "ok":
        return ("the tensorrt module has no Builder (a runtime-only build)",
                f"install the full TensorRT: {TRT_INSTALL_HINT}")
    if detected.get("version") and detected.get("exact") and detected.get("source") != "python module":
        reason = (f"TensorRT {detected['version']} is installed ({detected['source']}) but not importable from "
                  "this Python")
        hint = ("install its Python bindings for this interpreter (on a Jetson: python3-libnvinfer, and create "
                "the venv with --system-site-packages)")
        return reason, hint
    return "TensorRT is not installed", _install_hint(jetson)


def capabilities(results: dict[str, probe.Probe], jetson: dict | None, detected: dict) -> list[dict]:
    """What this machine can do, from the probe results (pure function of its inputs)."""
    caps = []
    base = _missing(results, ("torch", "onnx", "onnxruntime"))
    if base:
        caps.append(_cap("export", "no", "; ".join(base), "pip install segdeploy (torch, onnx, onnxruntime)"))
        caps.append(_cap("quantize", "no", "; ".join(base), "pip install segdeploy (torch, onnx, onnxruntime)"))
    else:
        caps.append(_cap("export", "yes", "torch -> ONNX, verified with ONNX Runtime on the CPU"))
        caps.append(_cap("quantize", "yes", "FP16 / INT8 Q/DQ ONNX and calibration, checked with ONNX Runtime"))

    trt, gpu, trtexec = results["tensorrt"], results["gpu"], results["trtexec"]
    has_builder = trt.status == "ok" and bool(trt.value.get("has_builder"))
    has_gpu = gpu.status == "ok"
    if has_builder and has_gpu:
        caps.append(_cap("build engines", "yes", f"TensorRT {trt.value['version']} on {gpu.value[0]['name']}"))
    elif has_builder:
        caps.append(_cap("build engines", "no",
                         f"TensorRT {trt.value['version']} is installed, but {_gpu_reason(results)}",
                         "build on the machine (GPU) that will run the engine"))
    elif trtexec.status == "ok" and has_gpu:
        reason, hint = _trt_not_importable(results, detected, jetson)
        caps.append(_cap("build engines", "partial", f"trtexec at {trtexec.value} only; {reason}", hint))
    else:
        reason, hint = _trt_not_importable(results, detected, jetson)
        if not has_gpu:
            reason += f"; {_gpu_reason(results)}"
        caps.append(_cap("build engines", "no", reason, hint))

    lean = results["tensorrt_lean"]
    runtime = (f"TensorRT {trt.value['version']}" if trt.status == "ok"
               else f"lean runtime {lean.value['module']} {lean.value.get('version')} (version-compatible engines only)"
               if lean.status == "ok" else None)
    if runtime and has_gpu:
        caps.append(_cap("run engines", "yes", f"{runtime} on {gpu.value[0]['name']}"))
    elif runtime:
        caps.append(_cap("run engines", "no", f"{runtime} is installed, but {_gpu_reason(results)}",
                         "run engines on a machine with an NVIDIA GPU and driver"))
    else:
        reason, hint = _trt_not_importable(results, detected, jetson)
        reason = reason.replace("TensorRT is not installed", "no TensorRT runtime (tensorrt or tensorrt_lean)")
        if not has_gpu:
            reason += f"; {_gpu_reason(results)}"
        caps.append(_cap("run engines", "no", reason, hint))

    caps.append(_plugins_capability(results))
    return caps


def _plugins_capability(results: dict[str, probe.Probe]) -> dict:
    missing = [what for what, key in (("nvcc", "nvcc"), ("cmake", "cmake"), ("a C++ compiler", "cxx"))
               if results[key].status != "ok"]
    if missing:
        notes = [results[k].note or results[k].error for k in ("nvcc", "cmake", "cxx")
                 if results[k].status != "ok"]
        return _cap("build plugins", "no", f"{', '.join(missing)} not found",
                    "; ".join(n for n in notes if n) or None)
    headers = results["tensorrt_headers"]
    nvcc = f"nvcc {results['nvcc'].value}"
    if headers.status != "ok":
        why = f"TensorRT header probe failed ({headers.error})" if headers.error else "TensorRT headers not found"
        return _cap("build plugins", "partial", f"CUDA kernels library yes ({nvcc}); TensorRT plugin library no: {why}",
                    "install TensorRT's headers (libnvinfer-dev) and run `segdeploy plugins build --tensorrt-root DIR`")
    version = headers.value.get("version")
    if version and int(version.split(".")[0]) < 10:
        return _cap("build plugins", "partial",
                    f"CUDA kernels library yes ({nvcc}); TensorRT {version} is older than 10 (IPluginV3), so the "
                    "plugin library is not built", "use TensorRT >= 10 (JetPack 6.1+)")
    return _cap("build plugins", "yes",
                f"{nvcc}; TensorRT {version or '(version unknown)'} headers at {headers.value['dir']}")
