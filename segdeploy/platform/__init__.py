"""What this machine is: Jetson detection, TensorRT version detection, and guarded probes.

Modules (each importable without torch, onnxruntime or tensorrt; those load only inside the probes):
    :mod:`segdeploy.platform.jetson`            L4T / device tree -> module, SoC, JetPack, TensorRT, DLA (tables)
    :mod:`segdeploy.platform.tensorrt_version`  the TensorRT version a host has or would have
                                                (module, dpkg, NvInferVersion.h, JetPack table)
    :mod:`segdeploy.platform.probe`             versions, CUDA driver/runtime, nvcc, GPUs, DLA, plugin library
    :mod:`segdeploy.platform.dpkg`              installed Debian package versions
    ``detect_trt.sh``                           POSIX sh twin of the TensorRT version detection
"""

from __future__ import annotations

from pathlib import Path

DETECT_TRT_SCRIPT = Path(__file__).with_name("detect_trt.sh")

__all__ = ["DETECT_TRT_SCRIPT"]
