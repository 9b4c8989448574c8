"""The TensorRT version a host (or a Jetson tree) has, or would have.

Contract:
    ``detect_tensorrt_version(root="/", use_module=None)`` -> :class:`TensorRTVersion`, trying in order
      1. the ``tensorrt`` Python module importable in this process (only when ``use_module``; default: only
         when ``root`` is ``"/"``, since the module belongs to the running system),
      2. ``dpkg-query`` over ``<root>/var/lib/dpkg`` for :data:`DPKG_PACKAGES` (first installed one wins),
      3. ``NvInferVersion.h`` in :data:`HEADER_DIRS` under ``root``,
      4. the JetPack table for the tree's L4T release (:mod:`segdeploy.platform.jetson`), marked as a table
         value (``exact=False``).
    ``version`` is ``major.minor.patch`` (``major.minor`` when only the table answers and it lacks the patch);
    ``None`` when no step answered, with each step's reason in ``tried``.
    ``detect_trt.sh`` beside this module runs steps 1-3 in POSIX sh with the same packages and directories
    (for the Jetson bundle's build script); keep the two in step.
Never raises: a step that fails records its error in ``tried`` and the next step runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from segdeploy.platform import dpkg

DPKG_PACKAGES = ("tensorrt", "libnvinfer-bin", "libnvinfer-dev", "libnvinfer11", "libnvinfer10", "libnvinfer8")
HEADER_DIRS = ("usr/include", "usr/include/aarch64-linux-gnu", "usr/include/x86_64-linux-gnu",
               "usr/local/cuda/include")
HEADER_NAME = "NvInferVersion.h"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
_DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(\w+)", re.MULTILINE)


@dataclass(frozen=True)
class TensorRTVersion:
    version: str | None
    source: str | None  # "python module", "dpkg <package>", "header <path>", "JetPack <x> table"
    exact: bool = True  # False: a table value for the JetPack release, not read from the machine
    tried: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"version": self.version, "source": self.source, "exact": self.exact, "tried": list(self.tried)}


def normalize_version(text: str | None) -> str | None:
    """``10.13.3.9`` -> ``10.13.3``; ``8.6`` -> ``8.6``; ``None`` for text that is no version."""
    m = _VERSION_RE.match((text or "").strip())
    if not m:
        return None
    return ".".join(g for g in m.groups() if g is not None)


def version_from_module() -> str | None:
    """``tensorrt.__version__`` normalized, ``None`` when the module is not installed.

    Raises ImportError (or what the import raises) when it is installed but cannot be imported.
    """
    if importlib.util.find_spec("tensorrt") is None:
        return None
    mod = importlib.import_module("tensorrt")
    return normalize_version(getattr(mod, "__version__", None))


def version_from_dpkg(root: str | Path = "/") -> tuple[str, str] | None:
    """(version, package) of the first installed package of :data:`DPKG_PACKAGES`; raises dpkg.DpkgError."""
    found = dpkg.installed_versions(DPKG_PACKAGES, root)
    for pkg in DPKG_PACKAGES:
        v = normalize_version(found.get(pkg))
        if v:
            return v, pkg
    return None


def parse_version_header(text: str) -> str | None:
    """``NV_TENSORRT_MAJOR/MINOR/PATCH`` from NvInferVersion.h text (literal or via ``TRT_*_ENTERPRISE``)."""
    defines = dict(_DEFINE_RE.findall(text))

    def value(name: str) -> str | None:
        v = defines.get(name)
        for _ in range(4):  # follow a macro alias a few levels
            if v is None or v.isdigit():
                return v
            v = defines.get(v)
        return None

    parts = [value(f"NV_TENSORRT_{p}") for p in ("MAJOR", "MINOR", "PATCH")]
    if any(p is None for p in parts):
        return None
    return ".".join(parts)  # type: ignore[arg-type]


def find_version_header(root: str | Path = "/", dirs: tuple[str, ...] = HEADER_DIRS) -> Path | None:
    """The first ``NvInferVersion.h`` in ``dirs`` under ``root``."""
    for d in dirs:
        p = Path(root) / d / HEADER_NAME
        if p.is_file():
            return p
    return None


def detect_tensorrt_version(root: str | Path = "/", use_module: bool | None = None) -> TensorRTVersion:
    """See the module docstring."""
    tried: list[str] = []
    if use_module is None:
        use_module = Path(root).resolve() == Path("/")
    if use_module:
        try:
            v = version_from_module()
        except Exception as e:  # an installed module that fails to import: say why, go on
            v = None
            tried.append(f"python module: import tensorrt failed ({_one_line(e)})")
        else:
            if v is None:
                tried.append("python module: tensorrt is not installed")
        if v:
            return TensorRTVersion(v, "python module", True, tuple(tried))
    try:
        hit = version_from_dpkg(root)
    except dpkg.DpkgError as e:
        hit = None
        tried.append(f"dpkg: {_one_line(e)}")
    else:
        if hit is None:
            tried.append(f"dpkg: none of {', '.join(DPKG_PACKAGES)} is installed")
    if hit:
        return TensorRTVersion(hit[0], f"dpkg {hit[1]}", True, tuple(tried))
    header = find_version_header(root)
    if header is not None:
        try:
            v = parse_version_header(header.read_text(errors="replace"))
        except OSError as e:
            v = None
            tried.append(f"header: cannot read {header} ({e.strerror or e})")
        else:
            if v is None:
                tried.append(f"header: {header} has no NV_TENSORRT_MAJOR/MINOR/PATCH")
        if v:
            return TensorRTVersion(v, f"header {header}", True, tuple(tried))
    else:
        tried.append(f"header: no {HEADER_NAME} in {', '.join('/' + d for d in HEADER_DIRS)}")
    from segdeploy.platform import jetson

    try:
        info = jetson.detect(root)
    except Exception as e:  # jetson.detect does not raise for missing files; this guards the unexpected
        tried.append(f"JetPack table: {_one_line(e)}")
        return TensorRTVersion(None, None, True, tuple(tried))
    if info is not None and info.tensorrt:
        return TensorRTVersion(info.tensorrt, f"JetPack {info.jetpack} table (L4T {info.l4t})", False, tuple(tried))
    tried.append("JetPack table: not a Jetson" if info is None
                 else f"JetPack table: L4T {info.l4t or 'unknown'} is not in the table")
    return TensorRTVersion(None, None, True, tuple(tried))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
