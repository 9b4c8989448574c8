"""CPU evidence for the CUDA kernels' semantics: the kernels' __host__ __device__ thread bodies
(segdeploy/plugins/csrc/<op>/<op>_impl.cuh: per-element index decomposition with FastDiv, window/boundary
rules, unpool gather/fix-up/scatter passes, roi_align's per-block setup, sample-table fill and output phases)
compiled for the CPU (csrc/host_reference.cpp runs them block by block, thread by thread, phase by phase,
with the launchers' path choices) and compared with PyTorch/torchvision on CPU tensors.

What this does NOT cover (needs a GPU, see test_kernels_gpu.py): real parallel execution (races,
__syncthreads, atomics), the float2/half2 vector loads (scalar on the host), launch configuration and
CUDA error handling.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from segdeploy.errors import MissingDependencyError

import kernel_cases as kc


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    from segdeploy.plugins.build import build_host_reference
    from segdeploy.plugins.kernels import load_host_reference

    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler (c++) to build the host reference of the kernels")
    try:
        lib = build_host_reference(tmp_path_factory.mktemp("hostref"))
    except MissingDependencyError as e:
        pytest.skip(f"cannot build the host reference: {e}")
    return load_host_reference(lib)


# ---------------------------------------------------------------------------------------------- max pool
@pytest.mark.parametrize("cfg", kc.POOL_CONFIGS, ids=lambda c: "k{}s{}p{}d{}{}".format(*c[:4], "c" if c[4] else ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_max_pool_matches_torch(ref, cfg, dtype):
    k, s, p, d, ceil = cfg
    for shape in kc.POOL_SHAPES:
        for kind in ("random", "ties", "nan", "neginf"):
            x = kc.pool_inputs(shape, dtype, "cpu", kind)
            try:
                torch.nn.functional.max_pool2d(x, k, s, p, d, ceil)
            except RuntimeError:
                continue  # torch rejects this shape (output too small); covered by the error test
            for index_dtype in (torch.int64, torch.int32):
                kc.check_pool(ref, x, cfg, index_dtype)
            kc.check_pool(ref, x, cfg, torch.int64, path="generic")
            kc.check_pool(ref, x, cfg, torch.int32, path="wide")  # the 64-bit linear-index kernel variant


def test_max_pool_2x2_fast_path_odd_height_ceil(ref):
    # H odd + ceil_mode: the fast path's last window has one row
    x = kc.pool_inputs((1, 2, 7, 10), torch.float32, "cpu", "random")
    kc.check_pool(ref, x, ((2, 2), (2, 2), (0, 0), (1, 1), True), torch.int32)


def test_max_pool_rejects_what_torch_rejects(ref):
    from segdeploy.plugins.kernels import KernelError

    x = torch.randn(1, 1, 5, 5)
    with pytest.raises(KernelError, match="pad must be at most half"):
        ref.max_pool2d_with_indices(x, 3, 1, 2)
    with pytest.raises(KernelError, match="output size is too small"):
        ref.max_pool2d_with_indices(torch.randn(1, 1, 1, 1), 3, 1, 1, 2)
    with pytest.raises(KernelError, match="stride must be >= 1"):
        ref.max_pool2d_with_indices(x, 2, 0)


# ------------------------------------------------------------------------------------------- max unpool
@pytest.mark.parametrize("cfg", kc.UNPOOL_CONFIGS, ids=lambda c: "k{}s{}p{}".format(*c))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_max_unpool_from_pool_matches_torch(ref, cfg, dtype):
    k, s, p = cfg
    for shape in [(2, 3, 8, 8), (1, 2, 9, 13), (1, 1, 3, 3)]:
        x = kc.pool_inputs(shape, dtype, "cpu", "random")
        eligible = ref.gather_eligible(k, s, p, (0, 0), shape[-2:])
        algos = ["auto", "scatter"] + (["gather"] if s[0] >= k[0] and s[1] >= k[1] else [])
        for algo in algos:
            for index_dtype in (torch.int64, torch.int32):
                kc.check_unpool_from_pool(ref, x, cfg, index_dtype, algo)
            kc.check_unpool_from_pool(ref, x, cfg, torch.int32, algo, path="wide")
        assert eligible == (s[0] >= k[0] and s[1] >= k[1])


@pytest.mark.parametrize("invalid", [False, True], ids=["valid", "with-invalid"])
@pytest.mark.parametrize("algo", ["scatter", "gather", "auto"])
def test_max_unpool_arbitrary_indices(ref, algo, invalid):
    # indices anywhere in the plane (most outside their own window): gather must fall back to its fix-up
    # pass and still equal a plain scatter; out-of-range ones are skipped and counted.
    cfg = ((2, 2), (2, 2), (0, 0))
    for shape, (oh, ow) in [((2, 2, 4, 5), (8, 10)), ((1, 3, 3, 3), (7, 6))]:
        for dtype, index_dtype in [(torch.float32, torch.int64), (torch.float16, torch.int32)]:
            x = kc.pool_inputs(shape, dtype, "cpu", "random")
            idx = kc.random_unpool_indices(shape, oh, ow, "cpu", index_dtype, invalid)
            kc.check_unpool_arbitrary(ref, x, idx, cfg, oh, ow, algo)
            kc.check_unpool_arbitrary(ref, x, idx, cfg, oh, ow, algo, path="wide")


def test_max_unpool_gather_eligibility_and_errors(ref):
    from segdeploy.plugins.kernels import KernelError

    assert ref.gather_eligible(2, 2, 0, (4, 4), (8, 8))
    assert not ref.gather_eligible(3, 2, 1, (4, 4), (8, 8))  # overlapping windows
    assert not ref.gather_eligible(2, 2, 0, (4, 4), (6, 8))  # last window starts outside the output
    assert not ref.gather_eligible(0, 0, 0, (4, 4), (8, 8))  # params unknown
    x = torch.randn(1, 1, 4, 4)
    idx = torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(KernelError, match="gather needs stride >= kernel"):
        ref.max_unpool2d(x, idx, 3, 2, 1, output_size=(8, 8), algo="gather")
    with pytest.raises(KernelError, match="output height and width must be >= 1"):
        ref.max_unpool2d(x, idx, 2, 2, 0, output_size=(0, 8))
    res = ref.max_unpool2d(x, idx, 2, 2, 0, output_size=(8, 8))  # 16 values to one position
    assert res.invalid_indices == 0 and res.output.view(-1)[0] in x.view(-1) and res.output.view(-1)[1:].eq(0).all()


# -------------------------------------------------------------------------------------------- roi align
@pytest.mark.parametrize("out_size,sr,aligned,scale", kc.ROI_CONFIGS, ids=lambda v: str(v))
def test_roi_align_matches_torchvision(ref, out_size, sr, aligned, scale):
    x = kc.pool_inputs((2, 3, 13, 17), torch.float32, "cpu", "random")
    boxes = kc.roi_boxes(24, 13, 17, scale, torch.float32, "cpu", seed=sr + 10)
    for path in ("auto", "direct", "table"):
        kc.check_roi(ref, x, boxes, out_size, sr, aligned, scale, path=path)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_fp16(ref, aligned):
    x = kc.pool_inputs((2, 4, 12, 10), torch.float16, "cpu", "random")
    boxes = kc.roi_boxes(20, 12, 10, 0.5, torch.float16, "cpu", seed=3)
    for sr in (0, 2):
        kc.check_roi(ref, x, boxes, (5, 4), sr, aligned, 0.5)
    # half features with float32 boxes
    out = ref.roi_align(x, boxes.float(), (5, 4), 0.5, 2, aligned)
    kc.check_roi(ref, x, boxes, (5, 4), 2, aligned, 0.5)
    assert out.dtype == torch.float16


def test_roi_align_large_adaptive_box_uses_direct_path(ref):
    # 1 box over a 96x96 map with output 2x2 and adaptive sampling: 48x48 samples per bin > table capacity
    x = kc.pool_inputs((1, 2, 96, 96), torch.float32, "cpu", "random")
    boxes = torch.tensor([[0, 0.0, 0.0, 95.0, 95.0]])
    kc.check_roi(ref, x, boxes, (2, 2), 0, True, 1.0)


def test_roi_align_empty_and_batch_index_forms(ref):
    import torchvision

    x = kc.pool_inputs((3, 2, 8, 9), torch.float32, "cpu", "random")
    empty = ref.roi_align(x, torch.zeros(0, 5), (3, 3), 1.0, 2, True)
    assert empty.shape == (0, 2, 3, 3)
    boxes = kc.roi_boxes(10, 8, 9, 1.0, torch.float32, "cpu", seed=5, n=3)
    want = torchvision.ops.roi_align(x, boxes, (3, 3), 1.0, 2, True)
    for bdt in (torch.int32, torch.int64):
        got = ref.roi_align(x, boxes[:, 1:].contiguous(), (3, 3), 1.0, 2, True, batch_indices=boxes[:, 0].to(bdt))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_roi_align_invalid_batch_index_gives_zeros(ref):
    x = kc.pool_inputs((2, 2, 8, 8), torch.float32, "cpu", "random")
    boxes = torch.tensor([[2.0, 0, 0, 4, 4], [-1.0, 0, 0, 4, 4], [float("nan"), 0, 0, 4, 4], [1.9, 0, 0, 4, 4]])
    out = ref.roi_align(x, boxes, (2, 2), 1.0, 2, False)
    assert out[:3].eq(0).all()
    import torchvision

    # 1.9 truncates to batch 1, as torchvision's int cast does
    torch.testing.assert_close(out[3:], torchvision.ops.roi_align(x, boxes[3:], (2, 2), 1.0, 2, False))
    from segdeploy.plugins.kernels import KernelError

    with pytest.raises(KernelError, match="spatial_scale must be a finite number > 0"):
        ref.roi_align(x, boxes, (2, 2), 0.0, 2, False)
    with pytest.raises(KernelError, match="output size must be >= 1"):
        ref.roi_align(x, boxes, (0, 2), 1.0, 2, False)


def test_roi_align_samples_exactly_on_the_boundaries(ref):
    # single sample per bin (sampling_ratio=1, 1x1 output) at y or x exactly -1, 0, H-1, H: torchvision keeps
    # y == -1 and y == H (clamped), and drops anything beyond.
    x = kc.pool_inputs((1, 2, 8, 6), torch.float32, "cpu", "random")
    boxes = []
    for c in (-1.0, 0.0, 7.0, 8.0, 8.001, -1.001):  # sample y = box centre
        boxes.append([0, 1.0, c - 1.0, 3.0, c + 1.0])
    for c in (-1.0, 5.0, 6.0, 6.001):
        boxes.append([0, c - 1.0, 2.0, c + 1.0, 4.0])
    boxes = torch.tensor(boxes)
    for path in ("auto", "direct", "table"):
        kc.check_roi(ref, x, boxes, (1, 1), 1, False, 1.0, path=path, atol=0, rtol=0)


def test_roi_align_non_finite_boxes_give_zeros(ref):
    x = kc.pool_inputs((1, 2, 8, 8), torch.float32, "cpu", "random")
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor([[0, nan, 0, 4, 4], [0, 0, 0, inf, 4], [0, -inf, 0, 4, 4], [0, 0, 0, 4, nan]])
    for sr in (0, 2):
        for aligned in (False, True):
            assert ref.roi_align(x, boxes, (2, 2), 1.0, sr, aligned).eq(0).all()
            out = ref.roi_align(x, boxes[:, 1:].contiguous(), (2, 2), 1.0, sr, aligned,
                                batch_indices=torch.zeros(4, dtype=torch.int64))
            assert out.eq(0).all()


def test_fastdiv_is_exact_over_its_range(ref):
    # the kernels' multiply-high division (by OW, OH, strides, plane sizes); exact for n, d <= 2^31-1
    import ctypes

    f = ref._lib.sdref_fastdiv
    f.argtypes, f.restype = [ctypes.c_uint32, ctypes.c_uint32], ctypes.c_uint32
    g = torch.Generator().manual_seed(0)
    imax = 2**31 - 1
    divisors = list(range(1, 70)) + [2**k + o for k in range(7, 31) for o in (-1, 0, 1)] + [imax, 1000003]
    divisors += torch.randint(1, imax, (40,), generator=g).tolist()
    numerators = [0, 1, imax, imax - 1, 2**30, 65535, 65536] + torch.randint(0, imax, (60,), generator=g).tolist()
    for d in divisors:
        for n in numerators + [d - 1, d, d + 1, 3 * d - 1, imax // d * d, imax // d * d - 1]:
            if 0 <= n <= imax:
                assert f(n, d) == n // d, (n, d)


@pytest.mark.parametrize("out_size,channels", [((7, 7), 45), ((14, 14), 12), ((40, 30), 3)])
def test_roi_align_channel_chunks(ref, out_size, channels):
    # several (box, channel-chunk) blocks per box, the last chunk partial (chunk = 1024 // bins channels),
    # and outputs > threads per block
    x = kc.pool_inputs((2, channels, 11, 9), torch.float32, "cpu", "random")
    boxes = kc.roi_boxes(9, 11, 9, 0.5, torch.float32, "cpu", seed=7)
    for sr in (0, 2):
        kc.check_roi(ref, x, boxes, out_size, sr, True, 0.5)
