"""Bundle targets: where the bundle will be built, and what that implies (CUDA architecture, TensorRT lines).

``orin`` (Jetson AGX Orin / Orin NX / Orin Nano, SoC tegra234, SM 8.7): JetPack 6.0 (TensorRT 8.6), 6.1/6.2
(10.3), 7.2 (10.16), 7.2.2+ (11.4). ``thor`` (Jetson Thor, tegra264, SM 11.0 with CUDA 13): JetPack 7.x (10.13,
10.16, 11.4). ``x86`` (a workstation/server GPU; architecture from nvidia-smi): TensorRT 10.x / 11.x (8.6 too).
``triton`` is no device: ``segdeploy bundle --target triton`` writes a Triton model repository instead
(:mod:`segdeploy.bundle.triton`; its plan is built on the server, so any TensorRT line).
The TensorRT version itself is detected on the device by ``build.sh``; ``--trt-target`` only picks the line
shown in the bundle's README and the calibration-cache header written into ``calib/`` (build.sh re-stamps it).
Its default (:func:`trt_target_for`) is the one every command uses (:func:`segdeploy.trt.versions.default_target`:
the TensorRT installed here, else JetPack 6.2's 10.3.0) when the device can have it, else the device's own
(``thor``: JetPack 7.1's 10.13).
"""

from __future__ import annotations

from dataclasses import dataclass

from segdeploy.errors import UsageError
from segdeploy.trt.versions import Target, default_target, resolve_target


@dataclass(frozen=True)
class BundleTarget:
    key: str
    label: str
    cuda_arch: str  # CMake CUDA architectures for this device ("native": ask nvidia-smi on the device)
    trt_lines: tuple[str, ...]  # segdeploy.trt.versions release lines this device can have
    default_trt: str  # the device's own default target (when the common default is not one it can have)
    dla_note: str


TARGETS: dict[str, BundleTarget] = {
    "orin": BundleTarget("orin", "Jetson Orin (JetPack 6.x / 7.2)", "87", ("8.6", "10.3", "10.x", "11.x"), "jetpack-6.2",
                         "AGX Orin and Orin NX 16GB have 2 DLA cores (Orin NX 8GB: 1, Orin Nano: none)"),
    "thor": BundleTarget("thor", "Jetson Thor (JetPack 7.x)", "110", ("10.x", "11.x"), "jetpack-7.1", "Thor has no DLA"),
    "x86": BundleTarget("x86", "x86-64 workstation or server GPU", "native", ("8.6", "10.3", "10.x", "11.x"),
                        "jetpack-6.2", "no DLA"),
    # not a device bundle: a Triton Inference Server model repository (segdeploy.bundle.triton)
    "triton": BundleTarget("triton", "Triton Inference Server model repository", "native",
                           ("8.6", "10.3", "10.x", "11.x"), "jetpack-6.2", "no DLA"),
}
TRITON = "triton"


def trt_target_for(device: BundleTarget, text: str | None) -> Target:
    """The TensorRT target of a bundle for ``device``: ``text`` (``--trt-target``; UsageError when the device cannot
    have it), else the common default when the device can have it, else the device's own default."""
    if text is not None:
        t = resolve_target(text)
        if t.line not in device.trt_lines:
            raise UsageError(f"--trt-target {text} ({t.label}) does not run on {device.label}; use one of "
                             f"{', '.join(device.trt_lines)}")
        return t
    t = default_target()
    return t if t.line in device.trt_lines else resolve_target(device.default_trt, option="default for " + device.key)


def resolve(key: str) -> BundleTarget:
    try:
        return TARGETS[key]
    except KeyError:
        raise UsageError(f"unknown --target {key!r}; use one of {', '.join(TARGETS)}") from None
