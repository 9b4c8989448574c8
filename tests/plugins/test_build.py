"""CI compile of the CUDA kernels with nvcc through `segdeploy plugins build` (no GPU needed), the exported
symbols of the kernels library, and the build driver's error paths."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from segdeploy.cli import main
from segdeploy.errors import ArtifactError, MissingDependencyError, UsageError
from segdeploy.plugins.build import BuildOptions, build_plugins, find_nvcc, normalize_arch, supported_archs

EXPECTED_SYMBOLS = {
    "sd_abi_version",
    "sd_error_string",
    "sd_last_error",
    "sd_maxpool2d_output_size",
    "sd_maxpool2d_with_indices",
    "sd_maxunpool2d",
    "sd_maxunpool2d_gather_eligible",
    "sd_maxunpool2d_workspace_size",
    "sd_roi_align",
}


def _toolchain_or_skip():
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed: cannot compile the CUDA kernels here")
    try:
        find_nvcc()
    except MissingDependencyError as e:
        pytest.skip(f"nvcc not installed: {e}")


def _exported(lib: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}


@pytest.mark.slow
def test_cli_build_compiles_kernels_for_sm80_and_exports_only_the_c_abi(tmp_path, capsys):
    _toolchain_or_skip()
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) not installed: cannot list the exported symbols")
    bdir = tmp_path / "build"
    rc = main(["plugins", "build", "--cuda-arch", "sm_80", "--build-dir", str(bdir), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads(out)
    assert res["schema"] == "segdeploy.result" and res["command"] == "plugins build" and res["ok"]
    info = res["stages"]["plugins"]
    lib = Path(info["kernels_library"])
    assert lib.is_file() and lib.parent == bdir.resolve() / "lib"
    assert info["cuda_architectures"] == "80"
    assert info["tensorrt_found"] is False and info["plugin_library"] is None  # no TensorRT here
    assert _exported(lib) == EXPECTED_SYMBOLS
    # the kernels really were compiled for sm_80 (cuobjdump ships with nvcc; skip that part if absent)
    cuobjdump = shutil.which("cuobjdump") or str(find_nvcc().resolve().parent / "cuobjdump")
    if Path(cuobjdump).is_file():
        elf = subprocess.run([cuobjdump, "--list-elf", str(lib)], capture_output=True, text=True).stdout
        assert "sm_80" in elf
    log = Path(info["log"]).read_text()
    assert "segdeploy: CUDA architectures: 80" in log
    _check_c_abi_without_gpu(lib)


def _check_c_abi_without_gpu(lib: Path) -> None:
    """The C ABI's host-side parts: version, output-size rule, validation messages, error codes."""
    import ctypes

    import torch

    from segdeploy.plugins.kernels import _out_size, load_kernels

    k = load_kernels(lib)  # checks sd_abi_version() == 1
    c = k._lib
    c.sd_maxpool2d_output_size.restype = ctypes.c_int64
    c.sd_maxpool2d_output_size.argtypes = [ctypes.c_int64] + [ctypes.c_int32] * 5
    for size in (1, 2, 5, 8, 17):
        for kk, s, p, d, ceil in [(2, 2, 0, 1, 0), (3, 2, 1, 1, 1), (3, 3, 1, 2, 1), (2, 2, 1, 3, 0), (4, 3, 2, 1, 1)]:
            want = _out_size(size, kk, s, p, d, bool(ceil))
            assert c.sd_maxpool2d_output_size(size, kk, s, p, d, ceil) == want
            if want >= 1 and p <= ((kk - 1) * d + 1) // 2:  # torch agrees where it accepts the params
                got = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), kk, s, p, d, bool(ceil))
                assert got.shape[-1] == want
    assert c.sd_maxunpool2d_workspace_size() == 8
    # validation happens before any CUDA call: one-line reasons through sd_last_error
    rc = k._pool(None, None, None, 0, 0, 1, 1, 5, 5, 3, 3, 1, 1, 2, 2, 1, 1, 0, None)
    assert rc == 1 and k._last_error().decode().startswith("max_pool2d: pad must be at most half")
    rc = k._unpool(None, None, None, 0, 0, 1, 1, 4, 4, 8, 8, 3, 3, 2, 2, 1, 1, 2, None, None)
    assert rc == 1 and "gather needs stride >= kernel" in k._last_error().decode()
    rc = k._roi(None, None, None, None, 0, 0, 0, 1, 1, 8, 8, 1, 7, 7, -1.0, 0, 1, None)
    assert rc == 1 and "spatial_scale must be a finite number > 0" in k._last_error().decode()
    # empty work launches nothing and succeeds, even without a GPU
    assert k._pool(None, None, None, 0, 0, 0, 3, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1, 0, None) == 0
    assert k._roi(None, None, None, None, 1, 1, 0, 1, 4, 8, 8, 0, 7, 7, 0.25, 0, 1, None) == 0
    # real work without a usable GPU/driver: a CUDA error code comes back (no crash), with its CUDA name
    if not torch.cuda.is_available():
        buf = ctypes.create_string_buffer(4096)
        rc = k._roi(buf, buf, None, buf, 0, 0, 0, 1, 1, 4, 4, 1, 2, 2, 1.0, 2, 1, None)
        assert rc not in (0, 1)
        assert c.sd_error_string(rc).decode() not in ("", "no error")


def test_normalize_arch_forms():
    supported = ["75", "80", "86", "87", "89", "90", "100", "110", "120"]
    assert normalize_arch("native", supported) == "native"
    assert normalize_arch("sm_87", supported) == "87"
    assert normalize_arch("80, 90-virtual", supported) == "80;90-virtual"
    assert normalize_arch("compute_110;90a", supported) == "110;90a"
    with pytest.raises(UsageError, match="Jetson Thor is 110 from CUDA 13"):
        normalize_arch("sm_101", supported)
    with pytest.raises(UsageError, match="is not an architecture"):
        normalize_arch("ampere", supported)


def test_installed_nvcc_knows_the_documented_jetson_archs():
    _toolchain_or_skip()
    archs = supported_archs(find_nvcc())
    assert "87" in archs  # Jetson Orin
    assert "110" in archs or "101" in archs  # Jetson Thor: 110 on CUDA 13, 101 on CUDA 12.8/12.9


def test_bad_arch_is_a_one_line_usage_error_and_writes_nothing(tmp_path, capsys):
    _toolchain_or_skip()
    bdir = tmp_path / "b"
    rc = main(["plugins", "build", "--cuda-arch", "sm_999", "--build-dir", str(bdir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: --cuda-arch sm_999: this nvcc does not support sm_999") and err.count("\n") == 1
    assert not bdir.exists()


def test_unwritable_build_dir_is_a_one_line_error(tmp_path, capsys):
    _toolchain_or_skip()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    rc = main(["plugins", "build", "--cuda-arch", "80", "--build-dir", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "is not writable" in err and "--build-dir" in err and err.count("\n") == 1
    assert blocker.read_text() == "not a directory"


def test_missing_tools_are_missing_dependency_errors(tmp_path):
    with pytest.raises(MissingDependencyError, match="cmake not found"):
        build_plugins(BuildOptions(cmake="no-such-cmake-xyz", build_dir=tmp_path / "b"))
    with pytest.raises(MissingDependencyError, match="nvcc not found"):
        find_nvcc("/no/such/nvcc")
    assert not (tmp_path / "b").exists()


def test_missing_source_tree_and_bad_tensorrt_root(tmp_path):
    _toolchain_or_skip()
    with pytest.raises(ArtifactError, match="no segdeploy source tree"):
        build_plugins(BuildOptions(cuda_arch="80", source_dir=tmp_path, build_dir=tmp_path / "b"))
    with pytest.raises(UsageError, match="--tensorrt-root .* is not a directory"):
        build_plugins(BuildOptions(cuda_arch="80", tensorrt_root=tmp_path / "nope", build_dir=tmp_path / "b2"))
    assert not (tmp_path / "b").exists() and not (tmp_path / "b2").exists()


def test_failed_configure_names_the_error_and_the_log(tmp_path):
    _toolchain_or_skip()
    src = tmp_path / "src"  # a plugins directory (as a bundle holds it) with a broken CMakeLists.txt
    (src / "csrc").mkdir(parents=True)
    (src / "CMakeLists.txt").write_text('cmake_minimum_required(VERSION 3.18)\nproject(x LANGUAGES NONE)\n'
                                        'message(FATAL_ERROR "deliberately broken")\n')
    from segdeploy.plugins.build import PluginBuildError

    with pytest.raises(PluginBuildError, match=r"CMake configure failed: CMake Error at .*full log: .*segdeploy-build.log"):
        build_plugins(BuildOptions(cuda_arch="80", source_dir=src, build_dir=tmp_path / "b"))
    assert "deliberately broken" in (tmp_path / "b" / "segdeploy-build.log").read_text()
    assert not (tmp_path / "b" / "lib").exists()


@pytest.mark.slow
def test_native_arch_without_gpu_falls_back_to_a_documented_list(tmp_path):
    _toolchain_or_skip()
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU driver is present: native resolves to the real GPU here")
    from segdeploy.plugins.build import source_root

    proc = subprocess.run(
        ["cmake", "-S", str(source_root()), "-B", str(tmp_path / "b"), f"-DCMAKE_CUDA_COMPILER={find_nvcc()}"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no GPU detected for SEGDEPLOY_CUDA_ARCH=native; using fallback architectures" in proc.stdout
    assert "segdeploy: CUDA architectures: 75-real;80-real;86-real;87-real;89-real;90" in proc.stdout
