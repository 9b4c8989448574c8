"""GPU tests of the CUDA kernels (libsegdeploy_kernels.so via ctypes) against PyTorch's / torchvision's CUDA ops.

Skipped with a reason when no CUDA GPU is visible. The library comes from $SEGDEPLOY_KERNELS_LIB, else it is
built for the local GPU (`segdeploy plugins build --cuda-arch native`) into a temporary directory.

compute-sanitizer: test_under_compute_sanitizer re-runs the smoke test of this file under
`compute-sanitizer --tool memcheck` and `--tool racecheck` (with PyTorch's caching allocator off, so that
out-of-bounds accesses hit unallocated memory). The same by hand:
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 SEGDEPLOY_KERNELS_LIB=build/segdeploy-plugins/lib/libsegdeploy_kernels.so \
    compute-sanitizer --tool memcheck --error-exitcode 99 python -m pytest tests/plugins/test_kernels_gpu.py -k smoke
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import kernel_cases as kc

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU available: the CUDA kernels cannot run here (CPU evidence: test_kernels_host.py)",
                allow_module_level=True)

DEV = "cuda"


@pytest.fixture(scope="module")
def lib_path(tmp_path_factory) -> Path:
    env = os.environ.get("SEGDEPLOY_KERNELS_LIB")
    if env:
        return Path(env)
    from segdeploy.plugins.build import BuildOptions, build_plugins

    res = build_plugins(BuildOptions(cuda_arch="native", build_dir=tmp_path_factory.mktemp("plugins-build")))
    return res.kernels_library


@pytest.fixture(scope="module")
def gpu(lib_path):
    from segdeploy.plugins.kernels import load_kernels

    return load_kernels(lib_path)


def _sync_ok():
    torch.cuda.synchronize()  # surfaces asynchronous kernel faults in the test that caused them


# ---------------------------------------------------------------------------------------------- max pool
@pytest.mark.parametrize("cfg", kc.POOL_CONFIGS, ids=lambda c: "k{}s{}p{}d{}{}".format(*c[:4], "c" if c[4] else ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_max_pool_matches_torch_cuda(gpu, cfg, dtype):
    k, s, p, d, ceil = cfg
    for shape in kc.POOL_SHAPES + [(2, 8, 64, 66), (1, 3, 129, 255)]:
        for kind in ("random", "ties", "nan", "neginf"):
            x = kc.pool_inputs(shape, dtype, DEV, kind)
            try:
                F.max_pool2d(x, k, s, p, d, ceil)
            except RuntimeError:
                continue
            for index_dtype in (torch.int64, torch.int32):
                kc.check_pool(gpu, x, cfg, index_dtype)
    _sync_ok()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_max_pool_misaligned_input_takes_the_scalar_path(gpu, dtype):
    shape = (2, 4, 32, 64)
    n = 2 * 4 * 32 * 64
    buf = torch.randn(n + 1, device=DEV).to(dtype)
    x = buf[1:].view(shape)  # data_ptr is 1 element off: no float2/half2 loads allowed
    assert x.data_ptr() % (2 * x.element_size()) != 0
    cfg = ((2, 2), (2, 2), (0, 0), (1, 1), False)
    out, idx = gpu.max_pool2d_with_indices(x, *cfg)
    ref, ref_idx = F.max_pool2d(x, 2, 2, return_indices=True)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    _sync_ok()


def test_max_pool_segnet_size_on_a_side_stream(gpu):
    x = torch.randn(2, 64, 256, 256, device=DEV)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out, idx = gpu.max_pool2d_with_indices(x, 2, 2, index_dtype=torch.int32)
    s.synchronize()
    ref, ref_idx = F.max_pool2d(x, 2, 2, return_indices=True)
    assert torch.equal(out, ref) and torch.equal(idx.long(), ref_idx)


@pytest.mark.slow
def test_pool_and_unpool_beyond_2_pow_31_elements(gpu):
    """The 64-bit linear-index paths (> 2^31 - 1 outputs): 2^33-element FP16 input, ~44 GB in all."""
    if torch.cuda.get_device_properties(0).total_memory < 60 * 2**30:
        pytest.skip("needs a GPU with >= 60 GiB of memory")
    x = torch.randn(8192, 1, 1024, 1024, device=DEV, dtype=torch.float16)
    out, idx = gpu.max_pool2d_with_indices(x, 2, 2, index_dtype=torch.int32)
    assert out.numel() == 2**31  # > INT32_MAX: uint64 indexing
    un = gpu.max_unpool2d(out, idx, 2, 2, 0, output_size=(1024, 1024), algo="scatter")
    assert un.invalid_indices == 0
    for plane in (0, 4095, 8191):
        ref, ref_idx = F.max_pool2d(x[plane : plane + 1], 2, 2, return_indices=True)
        assert torch.equal(out[plane : plane + 1], ref) and torch.equal(idx[plane : plane + 1].long(), ref_idx)
        ref_un = F.max_unpool2d(ref, ref_idx, 2, 2, output_size=(1024, 1024))
        assert torch.equal(un.output[plane : plane + 1], ref_un)
    del un
    gathered = gpu.max_unpool2d(out, idx, 2, 2, 0, output_size=(1024, 1024), algo="gather").output
    assert torch.equal(gathered[8191:], F.max_unpool2d(out[8191:], idx[8191:].long(), 2, 2, output_size=(1024, 1024)))
    _sync_ok()


# ------------------------------------------------------------------------------------------- max unpool
@pytest.mark.parametrize("cfg", kc.UNPOOL_CONFIGS, ids=lambda c: "k{}s{}p{}".format(*c))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_max_unpool_from_pool_matches_torch_cuda(gpu, cfg, dtype):
    k, s, p = cfg
    for shape in [(2, 3, 8, 8), (1, 2, 9, 13), (1, 1, 3, 3), (2, 16, 64, 96)]:
        x = kc.pool_inputs(shape, dtype, DEV, "random")
        algos = ["auto", "scatter"] + (["gather"] if s[0] >= k[0] and s[1] >= k[1] else [])
        for algo in algos:
            for index_dtype in (torch.int64, torch.int32):
                kc.check_unpool_from_pool(gpu, x, cfg, index_dtype, algo)
    _sync_ok()


@pytest.mark.parametrize("invalid", [False, True], ids=["valid", "with-invalid"])
@pytest.mark.parametrize("algo", ["scatter", "gather", "auto"])
def test_max_unpool_arbitrary_indices_cuda(gpu, algo, invalid):
    cfg = ((2, 2), (2, 2), (0, 0))
    for shape, (oh, ow) in [((2, 2, 4, 5), (8, 10)), ((1, 3, 3, 3), (7, 6)), ((2, 4, 32, 32), (64, 64))]:
        for dtype, index_dtype in [(torch.float32, torch.int64), (torch.float16, torch.int32)]:
            x = kc.pool_inputs(shape, dtype, DEV, "random")
            idx = kc.random_unpool_indices(shape, oh, ow, DEV, index_dtype, invalid)
            kc.check_unpool_arbitrary(gpu, x, idx, cfg, oh, ow, algo)
    _sync_ok()


# -------------------------------------------------------------------------------------------- roi align
@pytest.mark.parametrize("out_size,sr,aligned,scale", kc.ROI_CONFIGS, ids=lambda v: str(v))
def test_roi_align_matches_torchvision_cuda(gpu, out_size, sr, aligned, scale):
    x = kc.pool_inputs((2, 3, 13, 17), torch.float32, DEV, "random")
    boxes = kc.roi_boxes(24, 13, 17, scale, torch.float32, DEV, seed=sr + 10)
    kc.check_roi(gpu, x, boxes, out_size, sr, aligned, scale)
    _sync_ok()


@pytest.mark.parametrize("out_size", [(7, 7), (14, 14)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_roi_align_mask_rcnn_size(gpu, out_size, dtype):
    x = torch.randn(2, 256, 50, 68, device=DEV).to(dtype)
    boxes = kc.roi_boxes(300, 50, 68, 0.125, torch.float32, DEV, seed=1).to(dtype)
    for sr in (0, 2):
        kc.check_roi(gpu, x, boxes, out_size, sr, True, 0.125)
    _sync_ok()


def test_roi_align_large_adaptive_box_and_edge_cases_cuda(gpu):
    import torchvision

    x = kc.pool_inputs((3, 2, 96, 96), torch.float32, DEV, "random")
    kc.check_roi(gpu, x, torch.tensor([[0, 0.0, 0.0, 95.0, 95.0]], device=DEV), (2, 2), 0, True, 1.0)
    assert gpu.roi_align(x, torch.zeros(0, 5, device=DEV), (3, 3), 1.0, 2, True).shape == (0, 2, 3, 3)
    boxes = kc.roi_boxes(10, 96, 96, 1.0, torch.float32, DEV, seed=5, n=3)
    want = torchvision.ops.roi_align(x, boxes, (3, 3), 1.0, 2, True)
    for bdt in (torch.int32, torch.int64):
        got = gpu.roi_align(x, boxes[:, 1:].contiguous(), (3, 3), 1.0, 2, True, batch_indices=boxes[:, 0].to(bdt))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    bad = torch.tensor([[3.0, 0, 0, 4, 4], [-1.0, 0, 0, 4, 4], [float("nan"), 0, 0, 4, 4]], device=DEV)
    assert gpu.roi_align(x, bad, (2, 2), 1.0, 2, False).eq(0).all()
    _sync_ok()


# ------------------------------------------------------------------------------------- sanitizer smoke
def test_smoke_all_ops(gpu):
    """Small, fast coverage of every kernel/dtype/algorithm: what the compute-sanitizer run executes."""
    for dtype in (torch.float32, torch.float16):
        x = kc.pool_inputs((2, 3, 9, 10), dtype, DEV, "nan")
        for cfg in (kc.POOL_CONFIGS[0], kc.POOL_CONFIGS[3], kc.POOL_CONFIGS[7]):
            kc.check_pool(gpu, x, cfg, torch.int32)
        for algo in ("scatter", "gather"):
            kc.check_unpool_from_pool(gpu, kc.pool_inputs((2, 3, 8, 10), dtype, DEV, "random"),
                                      kc.UNPOOL_CONFIGS[0], torch.int64, algo)
            idx = kc.random_unpool_indices((1, 2, 4, 5), 8, 10, DEV, torch.int32, True)
            kc.check_unpool_arbitrary(gpu, kc.pool_inputs((1, 2, 4, 5), dtype, DEV, "random"), idx,
                                      kc.UNPOOL_CONFIGS[0], 8, 10, algo)
        xr = kc.pool_inputs((2, 3, 13, 17), dtype, DEV, "random")
        for sr in (0, 2):
            kc.check_roi(gpu, xr, kc.roi_boxes(12, 13, 17, 0.5, dtype, DEV), (3, 3), sr, True, 0.5)
        kc.check_roi(gpu, xr, torch.tensor([[1, 0.0, 0.0, 16.0, 12.0]], device=DEV, dtype=dtype), (1, 1), 0, True, 1.0)
    _sync_ok()


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
def test_under_compute_sanitizer(lib_path, tool):
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    if not Path(sanitizer).is_file():
        pytest.skip("compute-sanitizer not installed")
    if os.environ.get("SEGDEPLOY_UNDER_SANITIZER"):
        pytest.skip("already running under compute-sanitizer")
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1", SEGDEPLOY_KERNELS_LIB=str(lib_path),
               SEGDEPLOY_UNDER_SANITIZER="1")
    cmd = [sanitizer, "--tool", tool, "--error-exitcode", "99", sys.executable, "-m", "pytest", "-x", "-q",
           "-p", "no:cacheprovider", f"{__file__}::test_smoke_all_ops"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert "1 passed" in proc.stdout, tail
    assert "ERROR SUMMARY: 0 errors" in proc.stdout + proc.stderr or "RACECHECK SUMMARY: 0 hazards" in (
        proc.stdout + proc.stderr), tail
