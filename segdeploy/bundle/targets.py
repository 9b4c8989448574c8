"""Bundle targets: where the bundle will be built, and what that implies (CUDA architecture, TensorRT lines).

``orin`` (Jetson AGX Orin / Orin NX / Orin Nano, SoC tegra234, SM 8.7): JetPack 6.0 (TensorRT 8.6), 6.1/6.2
(10.3), 7.2 (10.16), 7.2.2+ (11.4). ``thor`` (Jetson Thor, tegra264, SM 11.0 with CUDA 13): JetPack 7.x (10.13,
10.16, 11.4). ``x86`` (a workstation/server GPU; architecture from nvidia-smi): TensorRT 10.x / 11.x (8.6 too).
The TensorRT version itself is detected on the device by ``build.sh``; ``--trt-version`` only picks the default
shown in the bundle's README and the calibration-cache header written for implicit INT8.
"""

from __future__ import annotations

from dataclasses import dataclass

from segdeploy.errors import UsageError


@dataclass(frozen=True)
class BundleTarget:
    key: str
    label: str
    cuda_arch: str  # CMake CUDA architectures for this device ("native": ask nvidia-smi on the device)
    trt_lines: tuple[str, ...]  # segdeploy.trt.versions target keys this device can have
    default_trt: str
    dla_note: str


TARGETS: dict[str, BundleTarget] = {
    "orin": BundleTarget("orin", "Jetson Orin (JetPack 6.x / 7.2)", "87", ("8.6", "10.3", "10.x", "11.x"), "10.3",
                         "AGX Orin and Orin NX 16GB have 2 DLA cores (Orin NX 8GB: 1, Orin Nano: none)"),
    "thor": BundleTarget("thor", "Jetson Thor (JetPack 7.x)", "110", ("10.x", "11.x"), "10.x", "Thor has no DLA"),
    "x86": BundleTarget("x86", "x86-64 workstation or server GPU", "native", ("8.6", "10.3", "10.x", "11.x"), "11.x",
                        "no DLA"),
}


def resolve(key: str) -> BundleTarget:
    try:
        return TARGETS[key]
    except KeyError:
        raise UsageError(f"unknown --target {key!r}; use one of {', '.join(TARGETS)}") from None
