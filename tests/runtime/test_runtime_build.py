"""Builds of the C++ runtime that need no GPU: CMake's CPU-only core from a standalone copy of the directory (with
libpng, and without it), the CUDA sources with nvcc, the TensorRT-facing code against user-supplied TensorRT headers
(``SEGDEPLOY_TRT_INCLUDE``, as tests/plugins/test_trt_compile.py; nothing is downloaded), the host code under
AddressSanitizer + UndefinedBehaviorSanitizer on broken inputs, and -- at the source level -- that host code is
allowed only on the caller's explicit request (--trust-host-code).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rt_util

CPP = rt_util.CPP
TRT_INCLUDE = os.environ.get("SEGDEPLOY_TRT_INCLUDE", "")
GPU_SOURCES = {"segmenter.cpp", "gpu_pipeline.cpp"}  # the only host sources that include CUDA/TensorRT headers


def _cuda_include() -> str | None:
    home = os.environ.get("CUDA_HOME")
    if home and (Path(home) / "include/cuda_runtime_api.h").is_file():
        return str(Path(home) / "include")
    if shutil.which("nvcc") is None:
        return None
    out = subprocess.run(["nvcc", "-x", "cu", "--dryrun", "-c", "/dev/null", "-o", "/dev/null"], capture_output=True, text=True).stderr
    for line in out.splitlines():
        if 'INCLUDES="-I' in line:
            return line.split('INCLUDES="-I', 1)[1].split('"', 1)[0]
    return None


def _run(cmd, cwd=None, timeout=900):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_core_target_lists_every_pure_source():
    core = {p.name for p in rt_util.core_sources()}
    cpp = {p.name for p in (CPP / "src").glob("*.cpp")}
    assert core == cpp - GPU_SOURCES
    text = (CPP / "CMakeLists.txt").read_text()
    assert re.search(r"add_library\(segdeploy_runtime src/segmenter.cpp src/gpu_pipeline.cpp src/kernels.cu\)", text)


def test_pure_parts_include_no_cuda_or_tensorrt():
    pure = [*rt_util.core_sources(), *(CPP / "include" / "segdeploy").glob("*.h"), CPP / "src" / "pixel_ops.h",
            CPP / "src" / "png_io.h", CPP / "tools" / "infer_args.cpp", CPP / "tools" / "infer_args.h"]
    for path in pure:
        includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(), re.M)
        bad = [i for i in includes if i.startswith(("Nv", "cuda", "cuda_", "cufft")) or i.endswith((".cuh",))]
        assert not bad, f"{path.name} includes {bad}"


def test_public_headers_need_no_third_party_library():
    """An application includes segdeploy's headers without nlohmann-json or libpng on its include path."""
    for path in (CPP / "include" / "segdeploy").glob("*.h"):
        includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(), re.M)
        third_party = [i for i in includes if i.startswith(("nlohmann", "png", "zlib"))]
        assert not third_party, (path.name, third_party)


def _cmake_core(tmp_path, *args) -> subprocess.CompletedProcess:
    """Configure the CPU-only core from a standalone copy of the directory (what a bundle ships)."""
    for tool in ("cmake", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    reason = rt_util.missing_dependency()
    if reason:
        pytest.skip(reason)
    copy = tmp_path / "runtime"
    if not copy.exists():
        shutil.copytree(CPP, copy)
    # python3 on PATH is the interpreter running the tests (the one with the test extra's nlohmann-json)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["cmake", "-S", str(copy), "-B", str(tmp_path / "build"), "-DSEGDEPLOY_RUNTIME_CPU_ONLY=ON", *args],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_cmake_cpu_only_build_of_a_standalone_copy(tmp_path):
    """nlohmann-json found without being named (the PyPI package through python3 on PATH, or the system's), libpng
    required and found; the core builds and links libpng."""
    conf = _cmake_core(tmp_path, "-DSEGDEPLOY_REQUIRE_PNG=ON")
    assert conf.returncode == 0, conf.stdout[-3000:] + conf.stderr[-3000:]
    assert "segdeploy runtime: nlohmann-json" in conf.stdout and "PNG through libpng" in conf.stdout, conf.stdout
    _run(["cmake", "--build", str(tmp_path / "build"), "-j2"])
    lib = tmp_path / "build" / "libsegdeploy_runtime_core.a"
    assert lib.is_file()
    assert "png_create_read_struct" in _run(["nm", "-u", str(lib)]).stdout


def test_cmake_without_libpng_configures_ppm_only(tmp_path):
    """-DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON (no libpng): a PPM/PGM-only core, said at configure time; with
    SEGDEPLOY_REQUIRE_PNG=ON (the bundle's build.sh) the configure step fails naming the package to install."""
    inc = f"-DSEGDEPLOY_JSON_INCLUDE_DIR={rt_util.json_include()}"
    conf = _cmake_core(tmp_path, "-DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON", inc)
    assert conf.returncode == 0, conf.stderr[-3000:]
    assert "libpng not found: images are read and written as PPM/PGM only" in conf.stdout, conf.stdout
    strict = _cmake_core(tmp_path, "-DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON", "-DSEGDEPLOY_REQUIRE_PNG=ON", inc)
    assert strict.returncode != 0 and "sudo apt install libpng-dev" in strict.stderr, strict.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["87", "110"])  # Jetson Orin (JetPack 6/7), Jetson Thor (JetPack 7, CUDA 13)
def test_cuda_sources_compile_with_nvcc(tmp_path, arch):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the CUDA kernels cannot be compiled here")
    archs = subprocess.run(["nvcc", "--list-gpu-code"], capture_output=True, text=True).stdout.split()
    if f"sm_{arch}" not in archs:
        pytest.skip(f"this nvcc cannot compile for sm_{arch} (it lists {' '.join(archs)})")
    flags = ["-std=c++17", f"-arch=sm_{arch}", "-Xcompiler=-Wall,-Wextra", "-Werror", "all-warnings",
             f"-I{CPP / 'include'}", f"-I{CPP / 'src'}"]
    _run(["nvcc", *flags, "-c", str(CPP / "src" / "kernels.cu"), "-o", str(tmp_path / "kernels.o")])
    # the GPU pipeline + the GPU test driver link against the CUDA runtime (no TensorRT, no GPU needed to link)
    exe = tmp_path / "gpu_harness"
    reason = rt_util.missing_dependency()
    if reason:
        pytest.skip(reason)
    _run(["nvcc", *flags, *rt_util.core_flags(), *map(str, rt_util.core_sources()), str(CPP / "src" / "gpu_pipeline.cpp"),
          str(tmp_path / "kernels.o"), str(rt_util.HERE / "gpu_harness.cpp"), "-o", str(exe), *rt_util.core_libs()])
    assert exe.is_file()


# ------------------------------------------------------------------------------------------------ TensorRT headers
needs_headers = pytest.mark.skipif(
    not TRT_INCLUDE,
    reason="SEGDEPLOY_TRT_INCLUDE is not set: point it at a TensorRT include/ directory (NvInfer.h) to "
    "compile-check the runtime's TensorRT code",
)


@needs_headers
def test_tensorrt_code_compiles_against_headers(tmp_path):
    cuda = _cuda_include()
    if cuda is None:
        pytest.skip("cuda_runtime_api.h not found (set CUDA_HOME or put nvcc on PATH)")
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Wshadow", "-Werror", "-isystem", TRT_INCLUDE, "-isystem", cuda,
             f"-I{CPP / 'include'}", f"-I{CPP / 'src'}", f"-I{CPP / 'tools'}"]
    for src in [CPP / "src" / "segmenter.cpp", CPP / "src" / "gpu_pipeline.cpp", CPP / "tools" / "segdeploy_infer.cpp"]:
        _run(["g++", *flags, "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))])
    # from libnvinfer the runtime needs only its two C entry points: any TensorRT version's library links
    undefined = _run(["nm", "-uC", str(tmp_path / "segmenter.o")]).stdout.split()
    trt = sorted(s for s in undefined if "nvinfer1" in s or s in ("createInferRuntime_INTERNAL", "getInferLibVersion"))
    assert trt == ["createInferRuntime_INTERNAL", "getInferLibVersion"], trt


@needs_headers
@pytest.mark.slow
def test_cmake_builds_the_runtime_library_against_headers(tmp_path):
    for tool in ("cmake", "nvcc", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    build = tmp_path / "build"
    _run(["cmake", "-S", str(CPP), "-B", str(build), f"-DTensorRT_INCLUDE_DIR={TRT_INCLUDE}", "-DSEGDEPLOY_CUDA_ARCH=87",
          f"-DSEGDEPLOY_JSON_INCLUDE_DIR={rt_util.json_include()}"])
    _run(["cmake", "--build", str(build), "--target", "segdeploy_runtime", "-j2"])
    assert (build / "libsegdeploy_runtime.a").is_file()


# ------------------------------------------------------------------------------------------------ sanitizers
@pytest.mark.slow
def test_host_code_under_sanitizers(tmp_path, manifest_doc):
    """ASan + UBSan build of the harness: broken PNGs, mutated PNGs, broken manifests and JSON, and a
    preprocessing + argmax round in both modes run clean (any report aborts with a non-0/1/2 status)."""
    reason = rt_util.missing_dependency()
    if reason:
        pytest.skip(reason)
    import test_runtime_image_io as io_tests
    import test_runtime_manifest as man_tests

    try:
        exe = rt_util.compile_harness(tmp_path, ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                                                 "-fno-omit-frame-pointer"], name="harness_asan")
    except AssertionError as e:
        if "libasan" in str(e) or "libubsan" in str(e):
            pytest.skip("the sanitizer runtime libraries are not installed")
        raise
    h = rt_util.Harness(exe)
    env_ok = {0, 1, 2}

    def check(*args):
        proc = h.run(*args, ok=False)
        assert proc.returncode in env_ok and "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, (args, proc.stderr[-3000:])
        return proc

    good = rt_util.VAL_IMAGES[0].read_bytes()
    p = tmp_path / "x.png"
    for data in [*io_tests._broken_pngs(good).values(), *io_tests.mutated_pngs(11, 60)]:
        p.write_bytes(data)
        check("decode", p, tmp_path / "o.raw")
    for name, (doc, _) in man_tests._broken(manifest_doc).items():
        (tmp_path / "m.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
        check("manifest", tmp_path / "m.json")
    for text, _ in man_tests.BAD_JSON:
        (tmp_path / "j.json").write_bytes(text.encode("latin-1"))
        check("manifest", tmp_path / "j.json")
    for mode in ("pad", "resize"):
        doc = copy.deepcopy(manifest_doc)
        doc["preprocess"]["resize"] = mode
        m = rt_util.write_manifest(tmp_path / f"{mode}.json", doc)
        imgs = [str(q) for q in rt_util.VAL_IMAGES[:3]]
        assert check("preprocess", m, tmp_path / "b.bin", "rgb-strided", *imgs).returncode == 0
        logits = np.random.default_rng(0).standard_normal((3, 6, 128, 128)).astype(np.float32)
        rt_util.write_logits(tmp_path / "l.bin", logits)
        assert check("classmap", m, tmp_path / "l.bin", tmp_path / "c.bin", "128x128", "100x128", "128x77").returncode == 0
    assert check("resize", rt_util.VAL_IMAGES[0], tmp_path / "r.raw", 61, 200).returncode == 0
    (tmp_path / "px.raw").write_bytes(bytes(range(256)) * 300)
    assert check("encode-png", tmp_path / "px.raw", tmp_path / "e.png", 320, 80, 3).returncode == 0
    assert check("decode", tmp_path / "e.png", tmp_path / "e.raw").returncode == 0


def test_docs_embedding_example_compiles(tmp_path):
    """The example of docs/jetson.md compiles against the public headers alone (no CUDA/TensorRT headers)."""
    if not rt_util.have_gxx():
        pytest.skip("g++ is not on PATH")
    doc = (rt_util.ROOT / "docs" / "jetson.md").read_text()
    blocks = re.findall(r"```cpp\n(.*?)```", doc, re.S)
    assert len(blocks) == 1 and "segdeploy::Segmenter seg(" in blocks[0]
    src = tmp_path / "example.cpp"
    src.write_text(blocks[0])
    _run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{CPP / 'include'}", str(src)])
    assert len(blocks[0].strip().splitlines()) <= 25


STUB_NVINFER = """/* test stand-in for libnvinfer: the only two C entry points segdeploy_runtime links against */
void* createInferRuntime_INTERNAL(void* logger, int version) { (void)logger; (void)version; return 0; }
int getInferLibVersion(void) { return 100300; }
"""


@needs_headers
@pytest.mark.slow
def test_segdeploy_infer_links_and_fails_cleanly_without_a_gpu(tmp_path, export_dir):
    """CMake links segdeploy_infer (against a stand-in libnvinfer: no TensorRT library is installable here) and
    its usage and file errors are one line with the documented exit status, before any GPU call."""
    for tool in ("cmake", "nvcc", "gcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    (tmp_path / "stub.c").write_text(STUB_NVINFER)
    _run(["gcc", "-shared", "-fPIC", str(tmp_path / "stub.c"), "-o", str(tmp_path / "libnvinfer.so")])
    build = tmp_path / "build"
    _run(["cmake", "-S", str(CPP), "-B", str(build), f"-DTensorRT_INCLUDE_DIR={TRT_INCLUDE}",
          f"-DTensorRT_LIBRARY={tmp_path / 'libnvinfer.so'}", "-DSEGDEPLOY_CUDA_ARCH=87",
          f"-DSEGDEPLOY_JSON_INCLUDE_DIR={rt_util.json_include()}"])
    _run(["cmake", "--build", str(build), "--target", "segdeploy_infer", "-j2"])
    exe = str(build / "segdeploy_infer")
    img = str(rt_util.VAL_IMAGES[0])

    def infer(*args):
        return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=60)

    usage = infer("--help").stdout
    assert usage.startswith("usage: segdeploy_infer") and "--trust-host-code" in usage
    cases = [
        (("a", "b"), 2, "expected 4 arguments ENGINE MANIFEST IMAGE OUT, got 2"),
        ((img, export_dir, img, tmp_path / "o.png", "--iterations", "-1"), 2, "--iterations takes an integer >= 1"),
        ((img, export_dir, tmp_path / "none.png", tmp_path / "o.png"), 1, "not found or not readable"),
        ((img, tmp_path / "nowhere", img, tmp_path / "o.png"), 1, "cannot open manifest"),
        ((img, export_dir, img, tmp_path / "o.png"), 1, "is not a serialized TensorRT plan (no 'ftrt' magic)"),
        ((tmp_path / "missing.engine", export_dir, img, tmp_path / "o.png"), 1, "cannot read engine"),
    ]
    for args, code, expected in cases:
        proc = infer(*args)
        assert proc.returncode == code and expected in proc.stderr, (args, proc.returncode, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    # a plan-looking file passes the file checks and reaches CUDA (no GPU here) or the stand-in runtime (null)
    (tmp_path / "fake.engine").write_bytes(b"ftrt" + bytes(20) + bytes([10, 3, 0, 26]) + bytes(64))
    proc = infer(tmp_path / "fake.engine", export_dir, img, tmp_path / "o.png")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "CUDA cudaGetDevice failed" in proc.stderr or "TensorRT createInferRuntime failed" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.png").exists()
    # an engine the manifest records as version-compatible: refused before any GPU call without --trust-host-code
    doc = json.loads((export_dir / "manifest.json").read_text())
    doc["engines"] = [{"file": "fake.engine", "precision": "fp32", "flags": {"builder": ["VERSION_COMPATIBLE"]}}]
    vc = rt_util.write_manifest(tmp_path / "vc.json", doc)
    proc = infer(tmp_path / "fake.engine", vc, img, tmp_path / "o.png")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "pass --trust-host-code" in proc.stderr, proc.stderr
    proc = infer(tmp_path / "fake.engine", vc, img, tmp_path / "o.png", "--trust-host-code")
    assert proc.returncode == 1 and "trust-host-code" not in proc.stderr, proc.stderr  # on to CUDA / the runtime


def _function_body(text: str, signature: str) -> str:
    start = text.index(signature)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j + 1]
    raise AssertionError(f"unbalanced braces after {signature}")


def test_host_code_is_allowed_only_on_request():
    """segmenter.cpp calls IRuntime::setEngineHostCodeAllowed(true) once, inside allowHostCode and behind the
    TensorRT >= 8.6 guard; allowHostCode runs only under SegmenterOptions::trust_host_code and before the engine is
    deserialized; the manifest's version-compatible record is checked before that; segdeploy_infer passes
    --trust-host-code through. (The compile checks against NVIDIA's headers prove the call exists in 8.6-11.x.)"""
    src = (CPP / "src" / "segmenter.cpp").read_text()
    assert src.count("setEngineHostCodeAllowed(") == 1 and "setEngineHostCodeAllowed(true)" in src
    allow = _function_body(src, "void allowHostCode(nvinfer1::IRuntime& runtime)")
    assert re.search(r"#if NV_TENSORRT_MAJOR > 8 \|\| \(NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6\)\s*\n\s*"
                     r"runtime\.setEngineHostCodeAllowed\(true\);\s*\n#else", allow), allow
    load = _function_body(src, "void Segmenter::Impl::load(")
    calls = [m.start() for m in re.finditer(r"allowHostCode\(", load)]
    assert len(calls) == 1 and re.search(r"if \(options\.trust_host_code\) allowHostCode\(\*runtime\);", load)
    assert calls[0] < load.index("deserializeCudaEngine(")
    assert load.index("requireHostCodeTrust(entry, options.trust_host_code") < load.index("cudaGetDevice(")
    assert "deserializeFailureHint(" in load and "options.trust_host_code" in load[load.index("deserializeFailureHint("):]
    infer = (CPP / "tools" / "segdeploy_infer.cpp").read_text()
    assert "options.trust_host_code = args.trust_host_code;" in infer
