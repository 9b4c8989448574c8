"""Build the CUDA kernels (and, where TensorRT is found, the TensorRT plugin library) with CMake.

Contract:
    ``build_plugins(BuildOptions(...))`` runs ``cmake -S <source> -B <build_dir>`` (configure) and
    ``cmake --build`` and returns a :class:`BuildResult` naming the libraries it produced and the CUDA
    architectures CMake chose. The full CMake/nvcc output goes to ``<build_dir>/segdeploy-build.log``.
    ``build_host_reference(out_dir)`` compiles the kernels' __host__ __device__ bodies for the CPU with the
    C++ compiler (no CMake, no GPU) into ``libsegdeploy_kernels_hostref.so`` (used by the CPU tests).
Raises (one-line messages):
    :class:`~segdeploy.errors.MissingDependencyError` when cmake / nvcc / a C++ compiler is missing,
    :class:`~segdeploy.errors.UsageError` for an architecture nvcc does not support,
    :class:`~segdeploy.errors.ArtifactError` when the build dir is not writable or the source tree is absent,
    :class:`PluginBuildError` when configure or build fails (the first error line + the log path).

Architectures (``cuda_arch``): ``native`` (default: the GPUs nvidia-smi reports; without a GPU CMake falls back
to 75;80;86;87;89;90 and says so), or a comma/semicolon list of ``87``, ``sm_87``, ``87-real``, ``90-virtual``.
Jetson Orin = 87; Jetson Thor = 110 with CUDA 13 (101 with CUDA 12.8/12.9).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from segdeploy.errors import ArtifactError, MissingDependencyError, SegdeployError, UsageError
from segdeploy.plugins.locate import DEFAULT_BUILD_DIR, PLUGIN_LIBRARY

KERNELS_LIB = "libsegdeploy_kernels.so"
HOSTREF_LIB = "libsegdeploy_kernels_hostref.so"
LOG_NAME = "segdeploy-build.log"
_ARCH_RE = re.compile(r"^(?:sm_|compute_)?(\d{2,3}[a-z]?)(-real|-virtual)?$")
_SPECIAL_ARCHS = ("native", "all", "all-major")


class PluginBuildError(SegdeployError):
    """CMake configure or build failed."""


@dataclass(frozen=True)
class BuildOptions:
    """What to build and where. Paths may be relative (to the current directory)."""

    cuda_arch: str = "native"
    tensorrt_root: Path | None = None
    build_dir: Path = Path(DEFAULT_BUILD_DIR)
    source_dir: Path | None = None  # None: the plugin sources installed with this package
    build_type: str = "Release"
    jobs: int | None = None
    host_reference: bool = False  # also build libsegdeploy_kernels_hostref.so through CMake
    cmake: str = "cmake"
    nvcc: str | None = None  # None: $CUDACXX, PATH, /usr/local/cuda/bin/nvcc


@dataclass(frozen=True)
class BuildResult:
    build_dir: Path
    kernels_library: Path
    plugin_library: Path | None  # None when TensorRT was not found
    host_reference_library: Path | None
    cuda_architectures: str
    tensorrt_found: bool
    log: Path
    notes: tuple[str, ...] = ()  # warnings from segdeploy's own CMake files (e.g. TensorRT too old)


def find_nvcc(explicit: str | None = None) -> Path:
    """The nvcc to use, or MissingDependencyError."""
    candidates = [explicit] if explicit else [os.environ.get("CUDACXX"), "nvcc", "/usr/local/cuda/bin/nvcc"]
    for c in candidates:
        if not c:
            continue
        found = shutil.which(c)
        if found:
            return Path(found)
    raise MissingDependencyError(
        f"nvcc not found ({explicit or 'CUDACXX, PATH, /usr/local/cuda/bin'}); install the CUDA toolkit "
        "(>= 12) or pass --nvcc /path/to/nvcc"
    )


def cuda_include_dir(nvcc: str | None = None) -> Path:
    """The CUDA toolkit's include dir (cuda_fp16.h): $CUDA_HOME/$CUDA_PATH, next to nvcc, /usr/local/cuda."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    try:
        roots.append(str(find_nvcc(nvcc).resolve().parent.parent))
    except MissingDependencyError:
        pass
    roots.append("/usr/local/cuda")
    for r in roots:
        if r and (Path(r) / "include" / "cuda_fp16.h").is_file():
            return Path(r) / "include"
    raise MissingDependencyError(
        "CUDA headers (cuda_fp16.h) not found in $CUDA_HOME, next to nvcc or in /usr/local/cuda; "
        "install the CUDA toolkit or set CUDA_HOME"
    )


def find_cmake(name: str = "cmake") -> Path:
    found = shutil.which(name)
    if not found:
        raise MissingDependencyError(
            f"cmake not found ({name}); install CMake >= 3.18 (apt-get install cmake, or pip install cmake)"
        )
    return Path(found)


def supported_archs(nvcc: Path) -> list[str]:
    """Architecture numbers nvcc can compile for (``nvcc --list-gpu-arch``), e.g. ['75', '80', ..., '121']."""
    try:
        out = subprocess.run([str(nvcc), "--list-gpu-arch"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({m.group(1) for m in re.finditer(r"compute_(\d+[a-z]?)", out)}, key=lambda a: (len(a), a))


def normalize_arch(spec: str, supported: list[str]) -> str:
    """'sm_87, 90-virtual' -> '87;90-virtual' (CMake list); UsageError for unknown/unsupported entries."""
    spec = spec.strip()
    if spec in _SPECIAL_ARCHS:
        return spec
    parts = [p.strip() for p in re.split(r"[;,\s]+", spec) if p.strip()]
    if not parts:
        raise UsageError("--cuda-arch is empty; pass native or a list such as 87 or 80,90")
    out = []
    for p in parts:
        m = _ARCH_RE.match(p)
        if not m:
            raise UsageError(
                f"--cuda-arch entry {p!r} is not an architecture; use native, 87, sm_87, 90-real or 90-virtual"
            )
        num, suffix = m.group(1), m.group(2) or ""
        if supported and num.rstrip("abcdefghijklmnopqrstuvwxyz") not in supported:  # 90a: family of 90
            hint = " (Jetson Thor is 110 from CUDA 13)" if num == "101" else ""
            raise UsageError(
                f"--cuda-arch {p}: this nvcc does not support sm_{num}{hint}; supported: {', '.join(supported)}"
            )
        out.append(num + suffix)
    return ";".join(out)


def source_root(explicit: Path | None = None) -> Path:
    """The plugins' CMake project: ``explicit`` (a segdeploy checkout, or a plugins directory such as a bundle's),
    else the one shipped inside this package. Raises ArtifactError when it is not there."""
    here = Path(__file__).resolve().parent
    root = Path(explicit) if explicit is not None else here
    for cand in (root, root / "segdeploy" / "plugins"):
        if (cand / "CMakeLists.txt").is_file() and (cand / "csrc").is_dir():
            return cand
    raise ArtifactError(
        f"no segdeploy source tree at {root} (CMakeLists.txt + csrc/, or segdeploy/plugins/ of a checkout); "
        "pass --source-dir, or omit it to use the sources installed with segdeploy"
    )


def _writable_dir(d: Path) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".segdeploy-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ArtifactError(
            f"build dir {d} is not writable ({e.strerror or e}); pass --build-dir to a writable directory"
        ) from e
    return d.resolve()


def _first_error(text: str) -> str:
    for line in text.splitlines():
        low = line.lower()
        if "error" in low and "werror" not in low:
            return " ".join(line.split())[:300]
    tail = [ln for ln in text.splitlines() if ln.strip()]
    return " ".join(tail[-1].split())[:300] if tail else "no output"


def _run(cmd: list[str], log, what: str, log_path: Path) -> str:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        raise PluginBuildError(f"{what} failed: {_first_error(proc.stdout)} (full log: {log_path})")
    return proc.stdout


def build_plugins(options: BuildOptions = BuildOptions()) -> BuildResult:
    """Configure and build; see the module docstring."""
    cmake = find_cmake(options.cmake)
    nvcc = find_nvcc(options.nvcc)
    arch = normalize_arch(options.cuda_arch, supported_archs(nvcc))
    src = source_root(options.source_dir)
    if options.tensorrt_root is not None and not Path(options.tensorrt_root).is_dir():
        raise UsageError(f"--tensorrt-root {options.tensorrt_root} is not a directory")
    bdir = _writable_dir(Path(options.build_dir))
    log_path = bdir / LOG_NAME
    configure = [
        str(cmake), "-S", str(src), "-B", str(bdir),
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        f"-DCMAKE_BUILD_TYPE={options.build_type}",
        f"-DSEGDEPLOY_CUDA_ARCH={arch}",
        # re-resolve on every configure (an earlier run may have cached another choice)
        "-UCMAKE_CUDA_ARCHITECTURES",
        f"-DSEGDEPLOY_BUILD_HOST_REFERENCE={'ON' if options.host_reference else 'OFF'}",
    ]
    if options.tensorrt_root is not None:
        configure.append(f"-DTensorRT_ROOT={Path(options.tensorrt_root).resolve()}")
    jobs = options.jobs or os.cpu_count() or 1
    with open(log_path, "w", encoding="utf-8") as log:
        out = _run(configure, log, "CMake configure", log_path)
        _run([str(cmake), "--build", str(bdir), "-j", str(jobs)], log, "CMake build", log_path)
    m = re.search(r"segdeploy: CUDA architectures: (.*)", out)
    chosen = m.group(1).strip() if m else arch
    trt = "segdeploy: TensorRT headers:" in out
    libdir = bdir / "lib"
    kernels = libdir / KERNELS_LIB
    if not kernels.is_file():
        raise PluginBuildError(f"CMake build finished but {kernels} is missing (full log: {log_path})")
    plugin = next(iter(sorted(bdir.rglob(PLUGIN_LIBRARY))), None) if trt else None
    hostref = libdir / HOSTREF_LIB if options.host_reference else None
    notes = tuple(
        " ".join(m.group(1).split())
        for m in re.finditer(r"CMake Warning at (?:segdeploy/|trt/|CMakeLists)[^\n]*\n((?:[ \t]+\S.*\n)+)", out)
    )
    return BuildResult(bdir, kernels, plugin, hostref, chosen, trt, log_path, notes)


def build_host_reference(out_dir: Path, cxx: str | None = None, nvcc: str | None = None) -> Path:
    """Compile csrc/host_reference.cpp (the kernels' per-element bodies) for the CPU; returns the .so path.

    Needs a C++17 compiler and the CUDA toolkit's headers (cuda_fp16.h, cuda_runtime_api.h); no GPU.
    """
    compiler = shutil.which(cxx or os.environ.get("CXX", "c++") or "c++")
    if not compiler:
        raise MissingDependencyError("no C++ compiler found (c++ / $CXX); install g++ or clang++")
    cuda_include = cuda_include_dir(nvcc)
    csrc = Path(__file__).resolve().parent / "csrc"
    out = _writable_dir(Path(out_dir)) / HOSTREF_LIB
    tmp = out.with_name(out.name + ".tmp")
    cmd = [compiler, "-std=c++17", "-O2", "-Wall", "-shared", "-fPIC", "-fvisibility=hidden",
           "-fvisibility-inlines-hidden", f"-I{csrc}", f"-I{cuda_include}", str(csrc / "host_reference.cpp"),
           "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise PluginBuildError(f"host reference compile failed: {_first_error(proc.stderr)}")
    os.replace(tmp, out)
    return out
