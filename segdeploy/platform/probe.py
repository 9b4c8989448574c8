"""Probes of this machine: package versions, CUDA driver/runtime, nvcc, GPUs, TensorRT, DLA, plugin library.

Contract:
    Every ``probe_*`` function returns a :class:`Probe` and never raises: a failure inside a probe becomes
    ``Probe(error="<ExceptionType>: <one line>")``. ``value`` is JSON-serializable (str, int, bool, list, dict
    or None); ``value is None and error is None`` means "absent" (not installed / not found), with ``note``
    saying what was looked for. Heavy modules (torch, onnxruntime, tensorrt) are imported only inside the
    probes that need them, once per process (the import module cache). Subprocesses (nvcc, nvidia-smi) run
    with a timeout. Loading a library (libcuda, libcudart, the plugin library) uses ``ctypes.CDLL``, which
    maps it into this process. The torch probe records the warnings ``torch.cuda.is_available()`` raises (an
    old driver, say) inside ``warnings.catch_warnings``, which restores the filters on exit; nothing else in
    the process is changed.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import platform as _platform
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
LEAN_MODULES = ("tensorrt_lean_bindings", "tensorrt_lean")
_TIMEOUT_S = 20
_CUDA_ERROR_STUB_LIBRARY = 34  # CUresult of the toolkit's libcuda stub (no driver)


@dataclass(frozen=True)
class Probe:
    """One probe's answer: ``value`` (None when absent or failed), ``error`` (why it failed), ``note``."""

    value: Any = None
    error: str | None = None
    note: str | None = None

    @property
    def status(self) -> str:
        """``"error"``, ``"absent"`` or ``"ok"``."""
        if self.error is not None:
            return "error"
        return "absent" if self.value is None else "ok"

    def to_dict(self) -> dict:
        return {"status": self.status, "value": self.value, "error": self.error, "note": self.note}


def one_line(e: BaseException) -> str:
    """``"<Type>: <message on one line>"``."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def guarded(fn: Callable[..., Probe]) -> Callable[..., Probe]:
    """Turn any exception from ``fn`` into ``Probe(error=...)``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Probe:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # a probe never raises: its failure is the report
            return Probe(error=one_line(e))

    return wrapper


def _import(name: str) -> Any:
    """Import ``name``; None when not installed; the import's own exception when installed but broken."""
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=_TIMEOUT_S)


# --- versions -----------------------------------------------------------------------------------------
@guarded
def probe_segdeploy() -> Probe:
    from segdeploy import __version__

    return Probe(__version__, note=str(Path(__file__).resolve().parents[1]))


@guarded
def probe_python() -> Probe:
    return Probe(_platform.python_version(), note=sys.executable)


@guarded
def probe_platform() -> Probe:
    return Probe({"system": _platform.system(), "machine": _platform.machine(), "release": _platform.release()})


@guarded
def probe_torch() -> Probe:
    torch = _import("torch")
    if torch is None:
        return Probe(note="not installed (pip install torch)")
    with warnings.catch_warnings(record=True) as caught:  # e.g. "CUDA driver too old": report it
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count()) if available else 0
    note = "; ".join(" ".join(str(w.message).split()) for w in caught) or None
    return Probe({"version": torch.__version__, "cuda_build": torch.version.cuda,
                  "cuda_available": available, "device_count": count}, note=note)


@guarded
def probe_onnx() -> Probe:
    onnx = _import("onnx")
    if onnx is None:
        return Probe(note="not installed (pip install onnx)")
    return Probe(onnx.__version__)


@guarded
def probe_onnxruntime() -> Probe:
    ort = _import("onnxruntime")
    if ort is None:
        return Probe(note="not installed (pip install onnxruntime, or onnxruntime-gpu on a CUDA machine)")
    return Probe({"version": ort.__version__, "providers": list(ort.get_available_providers())})


@guarded
def probe_tensorrt() -> Probe:
    """The full TensorRT Python module (``tensorrt``: builder + runtime)."""
    trt = _import("tensorrt")
    if trt is None:
        return Probe(note="not installed")
    return Probe({"version": trt.__version__, "has_builder": hasattr(trt, "Builder")},
                 note=str(Path(getattr(trt, "__file__", "") or "").parent) or None)


@guarded
def probe_tensorrt_lean() -> Probe:
    """The lean runtime module (``tensorrt_lean_bindings`` from PyPI, ``tensorrt_lean`` from NVIDIA's packages)."""
    errors = []
    for name in LEAN_MODULES:
        try:
            mod = _import(name)
        except Exception as e:
            errors.append(f"{name}: {one_line(e)}")
            continue
        if mod is not None:
            return Probe({"module": name, "version": getattr(mod, "__version__", None)})
    if errors:
        return Probe(error="; ".join(errors))
    return Probe(note=f"not installed ({' / '.join(LEAN_MODULES)})")


@guarded
def probe_trtexec() -> Probe:
    for c in (shutil.which("trtexec"), *TRTEXEC_PATHS):
        if c and os.access(c, os.X_OK) and Path(c).is_file():
            return Probe(str(c))
    return Probe(note=f"not found (PATH, {', '.join(TRTEXEC_PATHS)})")


@guarded
def probe_nvcc() -> Probe:
    from segdeploy.errors import MissingDependencyError
    from segdeploy.plugins.build import find_nvcc

    try:
        nvcc = find_nvcc()
    except MissingDependencyError as e:
        return Probe(note=e.message)
    proc = _run([str(nvcc), "--version"])
    m = re.search(r"release \d+\.\d+, V(\d+\.\d+\.\d+)", proc.stdout) or re.search(r"release (\d+\.\d+)", proc.stdout)
    if proc.returncode != 0 or not m:
        tail = " ".join((proc.stderr or proc.stdout).split())[-200:]
        return Probe(error=f"{nvcc} --version failed (exit {proc.returncode}): {tail or 'no output'}")
    return Probe(m.group(1), note=str(nvcc))


@guarded
def probe_cmake() -> Probe:
    cmake = shutil.which("cmake")
    if not cmake:
        return Probe(note="not found (apt-get install cmake, or pip install cmake)")
    m = re.search(r"cmake version (\S+)", _run([cmake, "--version"]).stdout)
    return Probe(m.group(1) if m else "unknown version", note=cmake)


@guarded
def probe_cxx() -> Probe:
    for c in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        found = shutil.which(c) if c else None
        if found:
            return Probe(found)
    return Probe(note="no C++ compiler found ($CXX, c++, g++, clang++)")


@guarded
def probe_tensorrt_headers(root: str | os.PathLike = "/") -> Probe:
    """The TensorRT include dir (``NvInfer.h``) CMake would find: ``$TensorRT_ROOT`` first, then the system dirs."""
    from segdeploy.platform.tensorrt_version import HEADER_DIRS, HEADER_NAME, parse_version_header

    dirs = []
    trt_root = os.environ.get("TensorRT_ROOT")
    if trt_root:
        dirs += [Path(trt_root) / s for s in ("include", "include/x86_64-linux-gnu", "include/aarch64-linux-gnu")]
    dirs += [Path(root) / d for d in HEADER_DIRS]
    for d in dirs:
        if (d / "NvInfer.h").is_file():
            vh = d / HEADER_NAME
            version = parse_version_header(vh.read_text(errors="replace")) if vh.is_file() else None
            return Probe({"dir": str(d), "version": version})
    return Probe(note=f"NvInfer.h not found in {', '.join(str(d) for d in dirs)}")


# --- CUDA ---------------------------------------------------------------------------------------------
def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


@guarded
def probe_cuda_driver() -> Probe:
    """``cuDriverGetVersion`` from libcuda (the CUDA version the driver supports)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return Probe(note=f"libcuda.so.1 not loadable: no NVIDIA driver ({' '.join(str(e).split())})")
    v = ctypes.c_int(0)
    rc = lib.cuDriverGetVersion(ctypes.byref(v))
    if rc == _CUDA_ERROR_STUB_LIBRARY:
        return Probe(note="libcuda.so.1 is the CUDA toolkit's stub library: no NVIDIA driver installed")
    if rc != 0:
        return Probe(error=f"cuDriverGetVersion returned CUresult {rc}")
    return Probe(_cuda_version(v.value), note="libcuda.so.1")


def _cudart_version() -> tuple[str | None, str]:
    """(version, note) from the first loadable libcudart."""
    tried = []
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            tried.append(name)
            continue
        v = ctypes.c_int(0)
        if lib.cudaRuntimeGetVersion(ctypes.byref(v)) == 0:
            return _cuda_version(v.value), name
        tried.append(f"{name} (cudaRuntimeGetVersion failed)")
    return None, f"no libcudart loadable ({', '.join(tried)})"


@guarded
def probe_cuda_runtime() -> Probe:
    """CUDA runtime versions: torch's build (``torch.version.cuda``) and the system libcudart."""
    notes = []
    torch_cuda = None
    try:
        torch = _import("torch")
        torch_cuda = torch.version.cuda if torch is not None else None
    except Exception as e:
        notes.append(f"torch: {one_line(e)}")
    cudart, where = _cudart_version()
    notes.append(where)
    if torch_cuda is None and cudart is None:
        return Probe(note="; ".join(notes))
    return Probe({"torch": torch_cuda, "libcudart": cudart}, note="; ".join(notes))


# --- GPU ----------------------------------------------------------------------------------------------
@guarded
def probe_gpu(jetson: dict | None = None) -> Probe:
    """GPUs as ``[{"name", "compute_capability"}]`` from torch.cuda, else nvidia-smi, else the Jetson SoC.

    ``jetson`` is :meth:`JetsonInfo.to_dict` output (or None); its SoC is the last resort on a Jetson where
    neither torch nor nvidia-smi sees the integrated GPU.
    """
    tried = []
    try:
        torch = _import("torch")
        if torch is not None and torch.cuda.is_available():
            gpus = []
            for i in range(torch.cuda.device_count()):
                major, minor = torch.cuda.get_device_capability(i)
                gpus.append({"name": torch.cuda.get_device_name(i), "compute_capability": f"{major}.{minor}"})
            return Probe(gpus, note="torch.cuda")
        tried.append("torch.cuda: no CUDA device" if torch is not None else "torch: not installed")
    except Exception as e:
        tried.append(f"torch.cuda: {one_line(e)}")
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = _run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"])
        rows = [ln.rsplit(",", 1) for ln in proc.stdout.splitlines() if "," in ln]
        if proc.returncode == 0 and rows:
            return Probe([{"name": n.strip(), "compute_capability": c.strip()} for n, c in rows], note="nvidia-smi")
        tried.append(f"nvidia-smi: exit {proc.returncode} {' '.join(proc.stdout.split())[:200]}".strip())
    else:
        tried.append("nvidia-smi: not found")
    if jetson and jetson.get("compute_capability"):
        name = f"{jetson.get('soc_name') or jetson.get('soc')} integrated GPU"
        return Probe([{"name": name, "compute_capability": jetson["compute_capability"]}],
                     note="Jetson device tree (no CUDA device visible to torch or nvidia-smi)")
    return Probe(note="no NVIDIA GPU visible (" + "; ".join(tried) + ")")


# --- DLA ----------------------------------------------------------------------------------------------
@guarded
def probe_dla(tensorrt: Probe, gpu: Probe, jetson: dict | None) -> Probe:
    """DLA cores: ``trt.Builder(logger).num_DLA_cores`` when TensorRT imports and a GPU exists, else the table."""
    if tensorrt.status == "ok" and gpu.status == "ok" and tensorrt.value.get("has_builder"):
        trt = importlib.import_module("tensorrt")
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        return Probe(int(builder.num_DLA_cores), note="measured: trt.Builder.num_DLA_cores")
    why = ("TensorRT is not importable" if tensorrt.status != "ok"
           else "no GPU visible" if gpu.status != "ok" else "the tensorrt module has no Builder")
    if jetson is None:
        return Probe(0, note=f"not a Jetson: no DLA (not measured: {why})")
    if jetson.get("dla_cores") is None:
        return Probe(note=f"unknown for {jetson.get('module') or 'this module'} (not measured: {why})")
    conf = "" if jetson.get("dla_confirmed") else ", unconfirmed"
    return Probe(jetson["dla_cores"],
                 note=f"table value for {jetson.get('module') or jetson.get('soc')}{conf} (not measured: {why})")


# --- plugin library -----------------------------------------------------------------------------------
@guarded
def probe_plugin_library(explicit: str | os.PathLike | None = None) -> Probe:
    """Where the TensorRT plugin library is and whether ``ctypes.CDLL`` loads it."""
    from segdeploy.plugins.locate import DEFAULT, find_library

    search = find_library(explicit)
    path, source = search.path, search.source
    if path is None:
        msg = search.describe_miss()
        if source != DEFAULT:  # a given path or $SEGDEPLOY_PLUGINS that holds no library
            return Probe(error=msg)
        return Probe(note=msg + "; build it with `segdeploy plugins build --tensorrt-root DIR` or pass --plugins")
    try:
        ctypes.CDLL(str(path))
    except OSError as e:
        return Probe({"path": str(path), "source": source, "loadable": False,
                      "load_error": " ".join(str(e).split())})
    return Probe({"path": str(path), "source": source, "loadable": True, "load_error": None})
