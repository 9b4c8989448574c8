"""Helpers for the C++ runtime tests: compile the pure C++ core + a test driver with g++, run it, read its files.

The harness (runtime_harness.cpp) is compiled from segdeploy/runtime/cpp's core sources -- the list is read
from the ``segdeploy_runtime_core`` target of its CMakeLists.txt, so the tests build what CMake builds -- with
the same flags CMake uses for that target (C++17, -O2, -ffp-contract=off, warnings as errors) and the same
third-party libraries: nlohmann-json (headers; the PyPI package ``nlohmann-json`` of the test extra, else the
system's) and libpng + zlib (``-DSEGDEPLOY_HAVE_PNG=1 -lpng -lz``; ``png=False`` builds the PPM/PGM-only core).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CPP = ROOT / "segdeploy" / "runtime" / "cpp"
HERE = Path(__file__).resolve().parent
VAL_IMAGES = sorted((ROOT / "calibration" / "shapes" / "val" / "images").glob("*.png"))
CXXFLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Wshadow", "-Werror"]


def core_sources() -> list[Path]:
    """The sources of the segdeploy_runtime_core target, as listed in CMakeLists.txt."""
    text = (CPP / "CMakeLists.txt").read_text()
    m = re.search(r"add_library\(segdeploy_runtime_core STATIC(.*?)\)", text, re.S)
    assert m, "CMakeLists.txt has no segdeploy_runtime_core target"
    return [CPP / s for s in m.group(1).split()]


SYSTEM_INCLUDES = (Path("/usr/include"), Path("/usr/local/include"))


def json_include() -> Path | None:
    """The directory holding nlohmann/json.hpp: the PyPI package ``nlohmann-json`` (located without importing it),
    else a system include directory (apt nlohmann-json3-dev); None when neither has it."""
    spec = importlib.util.find_spec("nlohmann_json")
    if spec is not None and spec.submodule_search_locations:
        inc = Path(list(spec.submodule_search_locations)[0]) / "include"
        if (inc / "nlohmann" / "json.hpp").is_file():
            return inc
    return next((d for d in SYSTEM_INCLUDES if (d / "nlohmann" / "json.hpp").is_file()), None)


def have_libpng() -> bool:
    return any((d / "png.h").is_file() or (d / "libpng16" / "png.h").is_file() for d in SYSTEM_INCLUDES)


def core_flags(png: bool = True) -> list[str]:
    """Compiler flags for the core's third-party headers and PNG support (what CMake adds to the target)."""
    inc = json_include()
    assert inc is not None, "nlohmann-json not found: pip install nlohmann-json (the test extra has it)"
    flags = [] if inc in SYSTEM_INCLUDES else ["-isystem", str(inc)]
    return flags + (["-DSEGDEPLOY_HAVE_PNG=1"] if png else [])


def core_libs(png: bool = True) -> list[str]:
    return ["-lpng", "-lz"] if png else []


def missing_dependency() -> str | None:
    """Why the core cannot be compiled here (a skip reason), or None."""
    if not have_gxx():
        return "g++ is not on PATH: the C++ runtime's host code cannot be compiled here"
    if json_include() is None:
        return "nlohmann-json is not installed (pip install nlohmann-json, in the test extra; or apt nlohmann-json3-dev)"
    if not have_libpng():
        return "libpng's headers are not installed (apt install libpng-dev zlib1g-dev)"
    return None


def compile_harness(out: Path, extra: list[str] | None = None, name: str = "runtime_harness", png: bool = True) -> Path:
    """g++ the core + tools/infer_args.cpp + runtime_harness.cpp into ``out/name``; raise with the log on failure."""
    exe = out / name
    cmd = ["g++", *CXXFLAGS, *(extra or []), *core_flags(png), f"-I{CPP / 'include'}", f"-I{CPP / 'src'}",
           f"-I{CPP / 'tools'}", *map(str, core_sources()), str(CPP / "tools" / "infer_args.cpp"),
           str(HERE / "runtime_harness.cpp"), "-o", str(exe), *core_libs(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"g++ failed ({' '.join(cmd)}):\n{proc.stderr[-6000:]}")
    return exe


@dataclass
class Harness:
    exe: Path

    def run(self, *args, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.exe), *map(str, args)], capture_output=True, text=True, timeout=300)
        if ok and proc.returncode != 0:
            raise AssertionError(f"harness {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr}")
        return proc


def have_gxx() -> bool:
    return shutil.which("g++") is not None


# ------------------------------------------------------------------------------------------------- file formats
def read_batch(path: Path) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """preprocess output: int32 n,c,h,w; float32 batch; 7 int32 per image."""
    b = path.read_bytes()
    n, c, h, w = (int(v) for v in np.frombuffer(b[:16], np.int32))
    size = n * c * h * w
    batch = np.frombuffer(b[16:16 + 4 * size], np.float32).reshape(n, c, h, w)
    infos = np.frombuffer(b[16 + 4 * size:], np.int32).reshape(n, 7)
    return batch, [tuple(int(v) for v in row) for row in infos]


def write_logits(path: Path, logits: np.ndarray) -> None:
    dims = np.asarray(logits.shape, np.int32)
    path.write_bytes(dims.tobytes() + np.ascontiguousarray(logits).tobytes())


def read_maps(path: Path) -> list[np.ndarray]:
    b = path.read_bytes()
    out, off = [], 0
    while off < len(b):
        h, w = (int(v) for v in np.frombuffer(b[off:off + 8], np.int32))
        off += 8
        out.append(np.frombuffer(b[off:off + 2 * h * w], np.uint16).reshape(h, w))
        off += 2 * h * w
    return out


def max_ulp(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance in units in the last place between two float32 arrays of one shape."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    ia = a.view(np.int32).astype(np.int64)
    ib = b.view(np.int32).astype(np.int64)
    # map the sign-magnitude float order onto the integers (-0.0 and +0.0 both map to 0)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.abs(ia - ib).max()) if a.size else 0


def write_manifest(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    return path
