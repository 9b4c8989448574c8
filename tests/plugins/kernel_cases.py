"""Shared cases and checks for the CUDA kernels, run against PyTorch/torchvision.

Used by test_kernels_host.py (host build of the same per-element kernel bodies, CPU tensors, CPU torch
reference) and test_kernels_gpu.py (the CUDA library, CUDA tensors, CUDA torch reference). Every check
compares our output with the reference op on the same device; the tolerance rules are in each function.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

# (kernel, stride, padding, dilation, ceil_mode)
POOL_CONFIGS = [
    ((2, 2), (2, 2), (0, 0), (1, 1), False),  # SegNet: the vectorised fast path
    ((2, 2), (2, 2), (0, 0), (1, 1), True),
    ((3, 3), (2, 2), (1, 1), (1, 1), False),  # ResNet stem, overlapping windows
    ((3, 3), (2, 2), (1, 1), (1, 1), True),
    ((3, 2), (1, 2), (1, 0), (1, 1), False),
    ((2, 3), (3, 2), (1, 1), (2, 1), True),
    ((3, 3), (1, 1), (2, 2), (2, 2), False),  # dilation with padding
    ((2, 2), (2, 2), (1, 1), (3, 3), False),  # dilated window starts in the padding
    ((1, 1), (2, 2), (0, 0), (1, 1), True),
    ((4, 4), (3, 3), (2, 2), (1, 1), True),
]
POOL_SHAPES = [(1, 1, 1, 1), (2, 3, 9, 11), (1, 2, 8, 8), (2, 1, 7, 16), (1, 2, 17, 5)]


def pool_inputs(shape, dtype, device, kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(hash((shape, kind)) % (2**31))
    if kind == "random":
        x = torch.randn(shape, generator=g)
    elif kind == "ties":  # few distinct values: exercises "first max wins"
        x = torch.randint(-2, 3, shape, generator=g).float()
    elif kind == "nan":
        x = torch.randn(shape, generator=g)
        x[torch.rand(shape, generator=g) < 0.2] = float("nan")
    elif kind == "neginf":
        x = torch.full(shape, float("-inf"))
        x[torch.rand(shape, generator=g) < 0.1] = 1.0
    else:
        raise ValueError(kind)
    return x.to(dtype=dtype, device=device)


def check_pool(kernels, x: torch.Tensor, cfg, index_dtype, path: str = "auto") -> None:
    """Values and indices must equal F.max_pool2d(return_indices=True) EXACTLY (NaN where NaN)."""
    k, s, p, d, ceil = cfg
    ref, ref_idx = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    kw = {} if path == "auto" else {"path": path}
    out, idx = kernels.max_pool2d_with_indices(x, k, s, p, d, ceil, index_dtype=index_dtype, **kw)
    assert out.shape == ref.shape and idx.shape == ref_idx.shape, (out.shape, ref.shape)
    assert idx.dtype == index_dtype
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    both = ~torch.isnan(ref)
    assert torch.equal(out[both], ref[both]), (out - ref).abs().max()
    assert torch.equal(idx.long(), ref_idx), (idx.long() != ref_idx).nonzero()[:5]


def unpool_reference(x: torch.Tensor, idx: torch.Tensor, oh: int, ow: int) -> tuple[torch.Tensor, int]:
    """Sequential scatter with out-of-range indices skipped (our documented semantics) and their count."""
    n, c = x.shape[:2]
    out = torch.zeros((n * c, oh * ow), dtype=x.dtype)
    xi, ii = x.reshape(n * c, -1).cpu(), idx.reshape(n * c, -1).long().cpu()
    valid = (ii >= 0) & (ii < oh * ow)
    for pl in range(n * c):
        v = valid[pl]
        out[pl, ii[pl][v]] = xi[pl][v]
    return out.reshape(n, c, oh, ow), int((~valid).sum())


UNPOOL_CONFIGS = [  # kernel, stride, padding (of the pooling that produced the indices)
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (3, 3), (1, 1)),
    ((2, 3), (3, 3), (1, 0)),  # stride > kernel: gaps that stay zero
    ((3, 3), (2, 2), (1, 1)),  # overlapping: scatter only
]


def check_unpool_from_pool(kernels, x: torch.Tensor, cfg, index_dtype, algo: str, path: str = "auto") -> None:
    """Indices from max_pool2d: output must equal F.max_unpool2d exactly, no invalid indices."""
    k, s, p = cfg
    pooled, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    oh, ow = x.shape[-2:]
    ref = torch.ops.aten.max_unpool2d(pooled, idx, [oh, ow])
    kw = {} if path == "auto" else {"path": path}
    res = kernels.max_unpool2d(pooled, idx.to(index_dtype), k, s, p, output_size=(oh, ow), algo=algo, **kw)
    assert res.invalid_indices == 0
    assert torch.equal(res.output, ref), (res.output - ref).abs().max()


def random_unpool_indices(shape, oh: int, ow: int, device, index_dtype, invalid: bool) -> torch.Tensor:
    """Distinct in-range indices per plane (any position, so many are outside their window), plus a few
    out-of-range ones (negative and >= oh*ow) when `invalid`."""
    n, c, ih, iw = shape
    g = torch.Generator().manual_seed(ih * 131 + iw)
    rows = [torch.randperm(oh * ow, generator=g)[: ih * iw] for _ in range(n * c)]
    idx = torch.stack(rows).reshape(shape)
    if invalid:
        flat = idx.view(-1)
        flat[:: 7] = -1 - torch.arange(flat[::7].numel())
        flat[3 :: 11] = oh * ow + torch.arange(flat[3::11].numel())
    return idx.to(dtype=index_dtype, device=device)


def check_unpool_arbitrary(kernels, x: torch.Tensor, idx: torch.Tensor, cfg, oh: int, ow: int, algo: str,
                           path: str = "auto") -> None:
    """Arbitrary (distinct) indices: equal to the sequential scatter; invalid ones skipped and counted."""
    k, s, p = cfg
    ref, n_invalid = unpool_reference(x, idx, oh, ow)
    kw = {} if path == "auto" else {"path": path}
    res = kernels.max_unpool2d(x, idx, k, s, p, output_size=(oh, ow), algo=algo, **kw)
    assert res.invalid_indices == n_invalid
    assert torch.equal(res.output.cpu(), ref)


def roi_boxes(k: int, h: int, w: int, scale: float, dtype, device, seed: int = 0, n: int = 2) -> torch.Tensor:
    """K boxes [K,5] in image coordinates: inside, partly/fully outside, degenerate, reversed, tiny, huge."""
    g = torch.Generator().manual_seed(seed)
    H, W = h / scale, w / scale
    x1 = torch.rand(k, generator=g) * W * 1.4 - 0.2 * W
    y1 = torch.rand(k, generator=g) * H * 1.4 - 0.2 * H
    bw = torch.rand(k, generator=g) * W * 0.8
    bh = torch.rand(k, generator=g) * H * 0.8
    b = torch.stack([torch.randint(0, n, (k,), generator=g).float(), x1, y1, x1 + bw, y1 + bh], 1)
    special = torch.tensor([
        [0, 2.0, 3.0, 2.0, 3.0],             # zero-size
        [1, 5.0, 5.0, 1.0, 2.0],             # reversed corners
        [0, -50.0, -50.0, -20.0, -20.0],     # fully outside (top-left)
        [1, W + 10, H + 10, W + 40, H + 40],  # fully outside (bottom-right)
        [0, -1.0, -1.0, W + 1, H + 1],       # whole image and a bit
        [1, 0.3, 0.2, 0.31, 0.25],           # tiny
        [0, 0.0, 0.0, W - 1, 0.0],           # a line
    ])
    return torch.cat([b, special]).to(dtype=dtype, device=device)


ROI_CONFIGS = list(itertools.product([(7, 7), (2, 3)], [0, 2, -1, 1], [False, True], [1.0, 0.25]))


def check_roi(kernels, x: torch.Tensor, boxes: torch.Tensor, out_size, sr, aligned, scale, path: str = "auto",
              atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """FP32: equal to torchvision.ops.roi_align within 1e-5 (float summation order may differ by FMA).
    FP16: equal to torchvision float32 on the same (half) inputs, rounded once to half, within 1 half ulp
    (we accumulate in float; torchvision's half kernel rounds every step and is not the reference)."""
    import torchvision

    kw = {} if path == "auto" else {"path": path}
    out = kernels.roi_align(x, boxes, out_size, scale, sr, aligned, **kw)
    ref = torchvision.ops.roi_align(x.float(), boxes.float(), out_size, scale, sr, aligned)
    assert out.shape == ref.shape
    if x.dtype == torch.float16:
        torch.testing.assert_close(out.float(), ref.half().float(), atol=2e-3, rtol=1e-3)
    else:
        torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)
