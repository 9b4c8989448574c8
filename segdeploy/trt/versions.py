"""TensorRT target versions: which JetPack ships which TensorRT, and what each target can do.

This table is for *targets that are not installed here*: the trtexec generator (:mod:`segdeploy.trt.trtexec`)
prints commands for a device, and recipe notes name the alternative a user has. The builder and the runner
never consult it for the installed TensorRT: they probe the imported module (:mod:`segdeploy.trt.capabilities`).

Targets (``resolve_target``): ``8.6`` (JetPack 6.0), ``10.3`` (JetPack 6.1/6.2), ``10.x`` (10.4-10.16:
JetPack 7.0/7.1 = 10.13, JetPack 7.2 = 10.16, x86), ``11.x`` (JetPack 7.2.2+, x86). A full version such as
``8.6.2``, ``10.13.3`` or ``11.4.1`` resolves to its target. Default: the newest (``11.x``).
Facts from the TensorRT sources and release notes (see the project notes on TensorRT); where NVIDIA's pages
disagree (TensorRT 11 on Jetson), the conservative reading is used.
Raises :class:`~segdeploy.errors.UsageError` for a version outside 8.6 / 10.x / 11.x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from segdeploy.errors import UsageError


@dataclass(frozen=True)
class Target:
    """What one TensorRT release line can build, as trtexec and the Python API expose it."""

    key: str  # "8.6" | "10.3" | "10.x" | "11.x"
    label: str  # for messages: "TensorRT 8.6"
    example_version: str  # a real release of the line (the JetPack one where there is one)
    major: int
    jetpack: str  # which JetPack ships it ("" when none)
    weak_precision_flags: bool  # --fp16 / --int8 and BuilderFlag.FP16/INT8
    implicit_int8: bool  # calibrator API and trtexec --calib
    strongly_typed: str  # "absent" | "flag" (--stronglyTyped) | "always" (11: default, flag is a no-op)
    plugin_v3: bool  # IPluginV3 (segdeploy's plugins need it)
    dla: bool  # a JetPack of this line has DLA cores (Orin) and this TensorRT supports them
    hardware_compatibility: tuple[str, ...]  # trtexec --hardwareCompatibilityLevel values
    calib_cache_version: int | None  # TRT-<code>-EntropyCalibration2 header this target expects (None: varies / none)


TARGETS: dict[str, Target] = {
    "8.6": Target(
        key="8.6", label="TensorRT 8.6", example_version="8.6.2", major=8, jetpack="JetPack 6.0",
        weak_precision_flags=True, implicit_int8=True, strongly_typed="absent", plugin_v3=False, dla=True,
        hardware_compatibility=("none", "ampere+"), calib_cache_version=8602,
    ),
    "10.3": Target(
        key="10.3", label="TensorRT 10.3", example_version="10.3.0", major=10, jetpack="JetPack 6.1/6.2",
        weak_precision_flags=True, implicit_int8=True, strongly_typed="flag", plugin_v3=True, dla=True,
        hardware_compatibility=("none", "ampere+"), calib_cache_version=100300,
    ),
    "10.x": Target(
        key="10.x", label="TensorRT 10.x (10.4-10.16)", example_version="10.13.3", major=10,
        jetpack="JetPack 7.0/7.1 (10.13), 7.2 (10.16)",
        weak_precision_flags=True, implicit_int8=True, strongly_typed="flag", plugin_v3=True, dla=False,
        hardware_compatibility=("none", "ampere+", "sameComputeCapability"), calib_cache_version=None,
    ),
    "11.x": Target(
        key="11.x", label="TensorRT 11.x", example_version="11.4.1", major=11, jetpack="JetPack 7.2.2+",
        weak_precision_flags=False, implicit_int8=False, strongly_typed="always", plugin_v3=True, dla=False,
        hardware_compatibility=("none", "ampere+", "sameComputeCapability"), calib_cache_version=None,
    ),
}
DEFAULT_TARGET = "11.x"
# The TensorRT a calibration cache header names when none is given: JetPack 6.1/6.2's (Orin), the newest line
# that still reads calibration caches (implicit INT8 is gone in 11).
DEFAULT_CALIB_CACHE_VERSION = "10.3"

# JetPack -> (L4T, TensorRT, CUDA). "?" marks releases NVIDIA has not pinned down in public pages.
JETPACK: tuple[tuple[str, str, str, str], ...] = (
    ("6.0", "R36.3", "8.6.2", "12.2"),
    ("6.1", "R36.4.0", "10.3.0", "12.6"),
    ("6.2", "R36.4.3", "10.3.0", "12.6"),
    ("7.0", "R38.2", "10.13", "13.0"),
    ("7.1", "R38.4", "10.13", "13.0"),
    ("7.2", "R39", "10.16", "13.2"),
    ("7.2.2+", "R39", "11.4.1?", "13.x"),
)

_VERSION_RE = re.compile(r"^\s*(\d+)(?:\.(\d+|x))?(?:\.(\d+))?(?:\.(\d+))?\s*$")


def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26); '11.1' -> (11, 1). Raises UsageError for anything else."""
    parts = str(text).strip().split(".")
    try:
        nums = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"TensorRT version {text!r} is not like 10.3.0 or 8.6.2; use numbers separated by dots") from None
    if not 1 <= len(nums) <= 4 or any(n < 0 for n in nums):
        raise UsageError(f"TensorRT version {text!r} is not like 10.3.0 or 8.6.2; use numbers separated by dots")
    return nums


def resolve_target(text: str | None) -> Target:
    """A target key or a concrete version -> its :class:`Target` (None -> the newest)."""
    if text is None:
        return TARGETS[DEFAULT_TARGET]
    key = str(text).strip().lower()
    if key in TARGETS:
        return TARGETS[key]
    m = _VERSION_RE.match(key)
    if m:
        major = int(m.group(1))
        minor = m.group(2)
        if major == 8 and minor == "6":
            return TARGETS["8.6"]
        if major == 10 and minor == "3":
            return TARGETS["10.3"]
        if major == 10 and minor is not None:
            return TARGETS["10.x"]
        if major == 10:
            return TARGETS["10.x"]
        if major == 11:
            return TARGETS["11.x"]
    raise UsageError(
        f"unknown TensorRT target {text!r}; use one of {', '.join(TARGETS)} (or a version such as 8.6.2, 10.13.3, 11.4.1)"
    )


def trt_version_code(version: str | int) -> int:
    """'8.6.2' -> 8602, '10.3' -> 100300, '10.13.1' -> 101301; an int code is returned as is."""
    if isinstance(version, int):
        return version
    parts = str(version).strip().split(".")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"TensorRT version {version!r} is not like 8.6.2 or 10.3; pass major.minor[.patch]") from None
    if not 1 <= len(nums) <= 4 or (len(nums) == 1 and nums[0] < 1000):
        raise UsageError(f"TensorRT version {version!r} is not like 8.6.2 or 10.3; pass major.minor[.patch]")
    if len(nums) == 1:
        return nums[0]
    major, minor, patch = (nums + [0, 0])[:3]
    if minor > 99 or patch > 99:
        raise UsageError(f"TensorRT version {version!r} has a component above 99")
    if major < 10:
        if minor > 9 or patch > 99:
            raise UsageError(f"TensorRT version {version!r} cannot be encoded in the 8.x scheme")
        return major * 1000 + minor * 100 + patch
    return major * 10000 + minor * 100 + patch


def version_from_code(code: int) -> str:
    """Calibration-cache header code -> version: 8602 -> '8.6.2', 100300 -> '10.3.0'."""
    if code >= 10000:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def describe_targets() -> list[dict[str, object]]:
    """The table as JSON-able rows (for docs and `--json` output)."""
    return [
        {
            "target": t.key, "label": t.label, "example_version": t.example_version, "jetpack": t.jetpack,
            "precision_flags": t.weak_precision_flags, "implicit_int8": t.implicit_int8,
            "strongly_typed": t.strongly_typed, "plugin_v3": t.plugin_v3, "dla": t.dla,
            "calib_cache_version": t.calib_cache_version,
        }
        for t in TARGETS.values()
    ]
