"""TensorRT targets: which TensorRT a command's artifacts are for, when that TensorRT is not the one imported here.

A :class:`Target` is a TensorRT version, exact (``10.13.3``) or a range whose members build differently in ways
the range cannot tell (``10.x`` = 10.4-10.16: ``sameComputeCapability`` from 10.9, DLA until 10.7, a calibration-cache
header per version). What a target can build is :func:`segdeploy.trt.capabilities.for_target` (the same
:class:`~segdeploy.trt.capabilities.Capabilities` a probe of an installed module gives), decided by
:func:`segdeploy.trt.recipe.make_recipe` -- the one rule engine; this module only names versions.

Contract
--------
``resolve_target(text) -> Target`` accepts (raises :class:`~segdeploy.errors.UsageError` otherwise, one line
listing the forms):

========================== ==========================================================================
``10.13.3``, ``8.6.1``     that exact version (a 4th component, the build number, is ignored)
``jetpack-6.2``            the TensorRT of that JetPack release (:data:`segdeploy.platform.jetson.JETPACK_RELEASES`)
``8.6`` / ``10.3``         the JetPack lines' releases: 8.6.2 (JetPack 6.0) / 10.3.0 (JetPack 6.1-6.2.2)
``10.13`` (any ``M.m``)    the line ``M.m.x`` (a range: the patch level decides the calibration-cache header)
``10.x`` (or ``10``)       10.4-10.16 (JetPack 7.0-7.2, x86); ``11.x`` (or ``11``): 11.0 and later
``None``                   :func:`default_target`: the TensorRT installed here, else :data:`DEFAULT_TARGET`
========================== ==========================================================================

``default_target()``: the ``tensorrt`` module importable here (its exact version), else :data:`DEFAULT_TARGET`
(JetPack 6.2's TensorRT 10.3.0: the Orin production release, the newest line that still reads calibration caches
and has DLA). ``Target.calib_cache_code`` is the ``TRT-<code>-EntropyCalibration2`` header an exact target reads
(:func:`trt_version_code`; None for a range); :func:`cache_header_code` is the header `calibrate` writes for a
target (for a range: its example version's, with a note). ``Target.line`` is the release line (``8.6 | 10.3 | 10.x | 11.x``)
the Jetson bundle's ``build.sh`` switches on. Nothing here imports TensorRT except :func:`installed_version`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from segdeploy.errors import UsageError

if TYPE_CHECKING:
    from segdeploy.platform.jetson import JetPackRelease

Version = tuple[int, int, int]

# The target when none is given and no TensorRT is installed here: see the module docstring (README "Choices").
DEFAULT_TARGET = "jetpack-6.2"
# The default target's version, for the callers that still take a version string (calibrate's default until it takes
# --trt-target); tests/trt/test_recipe.py holds it equal to resolve_target(DEFAULT_TARGET).version.
DEFAULT_CALIB_CACHE_VERSION = "10.3.0"
LINES = ("8.6", "10.3", "10.x", "11.x")  # release lines, oldest first
_LINE_RANGES: dict[str, tuple[Version, Version]] = {
    "8.6": ((8, 6, 0), (8, 6, 99)),
    "10.3": ((10, 3, 0), (10, 3, 99)),
    "10.x": ((10, 4, 0), (10, 16, 99)),
    "11.x": ((11, 0, 0), (11, 99, 99)),
}
_LINE_ALIASES = {"8.6": "8.6.2", "10.3": "10.3.0", "10.x": "10.x", "10": "10.x", "11.x": "11.x", "11": "11.x"}
# releases named in messages when a range needs an exact version (besides the JetPack ones)
_RELEASES = ("10.13.3", "10.16.0", "11.4.1", "8.6.1")
_FORMS = "a version (10.13.3), jetpack-6.2, a line (8.6, 10.3, 10.x, 11.x)"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


@dataclass(frozen=True)
class Target:
    """A TensorRT version (or range) that artifacts are made for; see the module docstring."""

    low: Version
    high: Version  # == low for an exact version
    jetpack: str = ""  # "JetPack 6.1-6.2.2" (which JetPack releases ship it; "" none known)
    origin: str = ""  # how it was chosen: "--trt-target 10.13.3", "installed", "default"

    @property
    def exact(self) -> bool:
        return self.low == self.high

    @property
    def major(self) -> int:
        return self.low[0]

    @property
    def version(self) -> str:
        """``10.13.3`` (exact), ``10.13.x`` (one line), ``10.x`` (a release line), ``10.4-10.9`` (other ranges)."""
        if self.exact:
            return ".".join(map(str, self.low))
        if self.low[:2] == self.high[:2]:
            return f"{self.low[0]}.{self.low[1]}.x"
        for key, bounds in _LINE_RANGES.items():
            if bounds == (self.low, self.high):
                return key
        return f"{self.low[0]}.{self.low[1]}-{self.high[0]}.{self.high[1]}"

    @property
    def line(self) -> str:
        """The release line this target lies in (the bundle's build.sh arms)."""
        for key, (lo, hi) in _LINE_RANGES.items():
            if lo <= self.low and self.high <= hi:
                return key
        return f"{self.low[0]}.{self.low[1]}"  # 10.0-10.2: no Jetson line; printed as such

    key = line  # the name the earlier table used

    @property
    def label(self) -> str:
        """``TensorRT 10.13.3``, ``TensorRT 10.x (10.4-10.16)``, ``TensorRT 11.x``."""
        if self.version in _LINE_RANGES and self.low[1] > 0:
            return f"TensorRT {self.version} ({self.low[0]}.{self.low[1]}-{self.high[0]}.{self.high[1]})"
        return f"TensorRT {self.version}"

    @property
    def description(self) -> str:
        """For messages: ``TensorRT 10.3.0 (JetPack 6.1-6.2.2)``, ``TensorRT 10.x (10.4-10.16; JetPack 7.0-7.2)``."""
        if not self.jetpack:
            return self.label
        if self.label.endswith(")"):
            return f"{self.label[:-1]}; {self.jetpack})"
        return f"{self.label} ({self.jetpack})"

    @property
    def example_version(self) -> str:
        """An exact version in the range (for messages: 'e.g. --trt-target 10.13.3')."""
        if self.exact:
            return self.version
        known = [r.tensorrt for r in _jetpack_releases()] + list(_RELEASES)
        for text in known:
            v = _exact(text)
            if v is not None and self.low <= v <= self.high:
                return text
        return ".".join(map(str, self.low))

    @property
    def calib_cache_code(self) -> int | None:
        """The calibration-cache header this target reads (exact targets only)."""
        return trt_version_code(self.version) if self.exact else None

    def contains(self, version: Version) -> bool:
        return self.low <= version <= self.high

    def to_dict(self) -> dict[str, object]:
        return {"target": self.line, "version": self.version, "exact": self.exact, "label": self.label,
                "example_version": self.example_version, "jetpack": self.jetpack, "origin": self.origin,
                "calib_cache_code": self.calib_cache_code}


def _jetpack_releases() -> tuple[JetPackRelease, ...]:
    """platform's JetPack table: the one JetPack <-> TensorRT fact."""
    from segdeploy.platform.jetson import JETPACK_RELEASES

    return JETPACK_RELEASES


def _exact(text: str) -> Version | None:
    m = _VERSION_RE.match(text.strip())
    if not m or m.group(3) is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _jetpacks_for(low: Version, high: Version) -> str:
    """'JetPack 6.1-6.2.2': the GA JetPack releases whose TensorRT lies in [low, high]."""
    names = []
    for rel in _jetpack_releases():
        if " " in rel.jetpack:  # developer previews, early access, revisions
            continue
        parts = rel.tensorrt.split(".")
        v = (int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) > 2 else None)
        if v[2] is None:
            hit = low[:2] <= v[:2] <= high[:2]
        else:
            hit = low <= v <= high  # type: ignore[operator]
        if hit:
            names.append(rel.jetpack)
    if not names:
        return ""
    return f"JetPack {names[0]}" + (f"-{names[-1]}" if len(names) > 1 else "")


def _make(low: Version, high: Version, origin: str) -> Target:
    if not ((low[0] == 8 and low[1] == 6) or low[0] in (10, 11)) or low[0] != high[0]:
        raise UsageError(f"TensorRT {'.'.join(map(str, low[:2]))} is not a supported target; segdeploy targets "
                         "TensorRT 8.6, 10.x and 11.x")
    return Target(low, high, _jetpacks_for(low, high), origin)


def _from_jetpack(release: str, origin: str) -> Target:
    known = ", ".join(f"jetpack-{r.jetpack}" for r in _jetpack_releases()
                      if " " not in r.jetpack and not r.tensorrt.startswith("8.5"))
    for rel in _jetpack_releases():
        if rel.jetpack == release:
            exact = _exact(rel.tensorrt)
            major, minor = (int(p) for p in rel.tensorrt.split(".")[:2])
            try:
                return _make(exact, exact, origin) if exact else _make((major, minor, 0), (major, minor, 99), origin)
            except UsageError:
                raise UsageError(f"JetPack {release} ships TensorRT {rel.tensorrt}, which segdeploy does not target; "
                                 f"use one of {known}") from None
    raise UsageError(f"unknown JetPack release {release!r}; use one of {known}")


def resolve_target(text: str | Target | None, *, option: str = "--trt-target") -> Target:
    """A target from its text (see the module docstring); None -> :func:`default_target`."""
    if isinstance(text, Target):
        return text
    if text is None:
        return default_target()
    raw = str(text).strip()
    key = raw.lower()
    origin = f"{option} {raw}"
    if key.startswith(("jetpack-", "jetpack", "jp-")):
        return _from_jetpack(key.split("-", 1)[1] if "-" in key else key[len("jetpack"):], origin)
    key = _LINE_ALIASES.get(key, key)
    if key in ("10.x", "11.x"):
        lo, hi = _LINE_RANGES[key]
        return _make(lo, hi, origin)
    m = _VERSION_RE.match(key)
    if m is None:
        raise UsageError(f"unknown TensorRT target {raw!r}; use {_FORMS}")
    major, minor = int(m.group(1)), int(m.group(2))
    if minor > 99 or (m.group(3) is not None and int(m.group(3)) > 99):
        raise UsageError(f"unknown TensorRT target {raw!r}; use {_FORMS}")
    try:
        if m.group(3) is None:
            return _make((major, minor, 0), (major, minor, 99), origin)
        exact = (major, minor, int(m.group(3)))
        return _make(exact, exact, origin)
    except UsageError:
        raise UsageError(f"unknown TensorRT target {raw!r}; use {_FORMS} (TensorRT 8.6, 10.x or 11.x)") from None


def cache_header_code(target: Target, option: str = "--trt-target") -> tuple[int, str | None]:
    """(``TRT-<code>`` header, note) for a calibration cache written for ``target`` (``segdeploy calibrate``).

    An exact target: its own code, no note. A range (10.x, 11.x, 10.13): the code of its example version, and a note
    that implicit INT8 needs the exact one -- TensorRT skips a cache whose header names another version, and
    ``segdeploy build`` refuses such a cache (or rewrites the header with ``--rewrite-calib-header``). The explicit
    Q/DQ model and ModelOpt read the scales, never the header, so a range never stops calibration.
    """
    if target.calib_cache_code is not None:
        return target.calib_cache_code, None
    example = target.example_version
    return trt_version_code(example), (
        f"the calibration cache header names TensorRT {example} ({target.description} is not one version); implicit "
        f"INT8 reads it only on exactly that version: give the device's exact version with {option} for int8-implicit")


def installed_version() -> str | None:
    """``major.minor.patch`` of the ``tensorrt`` module importable here, None when there is none (or it is broken)."""
    from segdeploy.platform.tensorrt_version import version_from_module

    try:
        return version_from_module()
    except Exception:  # noqa: BLE001 - an installed module that fails to import builds nothing either
        return None


def default_target() -> Target:
    """The TensorRT installed here (exact), else :data:`DEFAULT_TARGET` (see the module docstring)."""
    here = installed_version()
    if here is not None:
        v = _exact(here)
        if v is not None:
            try:
                return _make(v, v, "installed")
            except UsageError:
                pass  # an unsupported installed TensorRT: the default target is still useful for printing
    return replace(resolve_target(DEFAULT_TARGET), origin="default")


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


def trt_version_code(version: str | int) -> int:
    """'8.6.2' -> 8602, '10.3' -> 100300, '10.13.1' -> 101301; an int code is returned as is.

    TensorRT's ``NV_TENSORRT_VERSION``: 8.x ``major*1000 + minor*100 + patch``, 10+ ``major*10000 + minor*100 +
    patch``. The Jetson bundle's build.sh computes the same with shell arithmetic (a test holds the two together).
    """
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


def line_targets() -> list[Target]:
    """One target per release line (:data:`LINES`), as ``resolve_target`` gives them (docs, the bundle)."""
    return [resolve_target(line, option="line") for line in LINES]
