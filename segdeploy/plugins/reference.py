"""NumPy reference implementations of the three segdeploy plugin ops, with PyTorch semantics.

These are the CPU ground truth for the CUDA kernels and the TensorRT plugins, and they back the
custom-op evaluation of a plugin-node ONNX graph (:mod:`segdeploy.plugins.onnx_mapping`). They are
written for clarity and exactness, not speed (use them on small tensors).

Functions (all inputs NCHW ``numpy`` arrays):

* :func:`max_pool2d_with_indices` -- ``torch.nn.functional.max_pool2d(..., return_indices=True)``:
  values and int64 indices flat *per plane* (``h * W + w``), as PyTorch returns them.
* :func:`max_unpool2d` -- ``torch.nn.functional.max_unpool2d``: scatter by per-plane indices into a
  zero-initialised output; out-of-range indices raise ``ValueError`` (PyTorch raises too).
* :func:`roi_align` -- ``torchvision.ops.roi_align`` (average mode): ``spatial_scale``,
  ``sampling_ratio`` (0 = adaptive), ``aligned``; boxes given as ``rois [K, 4]`` (x1, y1, x2, y2)
  plus ``batch_indices [K]`` (the ONNX RoiAlign form), or torchvision's ``[K, 5]`` form via
  :func:`split_boxes`.

Raises ``ValueError`` for malformed arguments (wrong ranks, non-positive sizes).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "pool_output_size",
    "unpool_output_size",
    "max_pool2d_with_indices",
    "max_unpool2d",
    "roi_align",
    "split_boxes",
]


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(x) for x in v)
    if len(t) == 1:
        return t[0], t[0]
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``: output length of one spatial axis."""
    num = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1  # floor division (num may be negative for tiny inputs)
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def unpool_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Default ``max_unpool2d`` output length: ``(size - 1) * stride - 2 * pad + kernel``."""
    return (size - 1) * stride - 2 * pad + kernel


def max_pool2d_with_indices(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with per-plane argmax indices, exactly as PyTorch computes them.

    Window elements are visited row-major; a strictly larger value (or a NaN) replaces the running
    maximum, so ties keep the first position. Padding is never selected.

    Returns ``(values [N,C,Ho,Wo] same dtype as x, indices [N,C,Ho,Wo] int64)``.
    """
    if x.ndim != 4:
        raise ValueError(f"max_pool2d_with_indices expects NCHW input, got shape {x.shape}")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None and stride != () else (kh, kw), "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(kh, kw, sh, sw, dh, dw) <= 0 or min(ph, pw) < 0:
        raise ValueError("kernel_size, stride and dilation must be positive and padding non-negative")
    if ph > ((kh - 1) * dh + 1) // 2 or pw > ((kw - 1) * dw + 1) // 2:
        raise ValueError("padding must be at most half of the effective kernel size (PyTorch's rule)")
    n, c, h, w = x.shape
    oh = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"pooling output size would be {oh}x{ow} for input {h}x{w}")
    best = np.full((n, c, oh, ow), -np.inf, dtype=np.float64)
    idx = np.full((n, c, oh, ow), -1, dtype=np.int64)
    xf = x.astype(np.float64)
    rows0 = np.arange(oh) * sh - ph
    cols0 = np.arange(ow) * sw - pw
    for i in range(kh):
        rows = rows0 + i * dh
        rvalid = (rows >= 0) & (rows < h)
        for j in range(kw):
            cols = cols0 + j * dw
            cvalid = (cols >= 0) & (cols < w)
            valid = rvalid[:, None] & cvalid[None, :]
            if not valid.any():
                continue
            rr = np.clip(rows, 0, h - 1)
            cc = np.clip(cols, 0, w - 1)
            v = xf[:, :, rr[:, None], cc[None, :]]
            take = valid & ((idx < 0) | (v > best) | np.isnan(v))
            best = np.where(take, v, best)
            idx = np.where(take, (rr[:, None] * w + cc[None, :]).astype(np.int64), idx)
    return best.astype(x.dtype), idx


def max_unpool2d(
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    output_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Scatter ``x`` by per-plane ``indices`` into a zero tensor ``[N, C, Ho, Wo]``.

    ``output_size`` (``(Ho, Wo)`` or a full NCHW shape) wins; otherwise the default size is
    derived from kernel_size/stride/padding. Duplicate indices: the last write (row-major order)
    wins, as on PyTorch's CPU. Raises ``ValueError`` for an index outside ``[0, Ho*Wo)``.
    """
    if x.ndim != 4 or indices.shape != x.shape:
        raise ValueError(f"max_unpool2d expects NCHW x and indices of the same shape, got {x.shape}, {indices.shape}")
    n, c, h, w = x.shape
    if output_size is not None:
        size = tuple(int(s) for s in output_size)
        if len(size) == 4:
            size = size[2:]
        if len(size) != 2:
            raise ValueError(f"output_size must be (H, W) or NCHW, got {output_size!r}")
        oh, ow = size
    else:
        if kernel_size is None:
            raise ValueError("max_unpool2d needs kernel_size or output_size")
        kh, kw = _pair(kernel_size, "kernel_size")
        sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
        ph, pw = _pair(padding, "padding")
        oh, ow = unpool_output_size(h, kh, sh, ph), unpool_output_size(w, kw, sw, pw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"max_unpool2d output size must be positive, got {oh}x{ow}")
    plane = oh * ow
    flat_idx = indices.reshape(n * c, h * w).astype(np.int64)
    if flat_idx.size and (flat_idx.min() < 0 or flat_idx.max() >= plane):
        raise ValueError(f"max_unpool2d index out of range [0, {plane}) for output size {oh}x{ow}")
    out = np.zeros((n * c, plane), dtype=x.dtype)
    rows = np.repeat(np.arange(n * c), h * w)
    out[rows, flat_idx.reshape(-1)] = x.reshape(-1)
    return out.reshape(n, c, oh, ow)


def split_boxes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ``[K, 5]`` boxes (batch_index, x1, y1, x2, y2) -> ``(rois [K,4], batch_indices [K] int64)``."""
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"boxes must be [K, 5], got {boxes.shape}")
    return boxes[:, 1:5], boxes[:, 0].astype(np.int64)


def _bilinear(plane: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """torchvision's bilinear_interpolate for one [C, H, W] plane at sample points y, x (same shape)."""
    _, h, w = plane.shape
    empty = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
    y = np.maximum(y, 0.0)
    x = np.maximum(x, 0.0)
    y_low = np.floor(y).astype(np.int64)
    x_low = np.floor(x).astype(np.int64)
    y_clamp = y_low >= h - 1
    x_clamp = x_low >= w - 1
    y_low = np.where(y_clamp, h - 1, y_low)
    x_low = np.where(x_clamp, w - 1, x_low)
    y_high = np.where(y_clamp, h - 1, y_low + 1)
    x_high = np.where(x_clamp, w - 1, x_low + 1)
    y = np.where(y_clamp, y_low.astype(np.float64), y)
    x = np.where(x_clamp, x_low.astype(np.float64), x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    v = (
        hy * hx * plane[:, y_low, x_low]
        + hy * lx * plane[:, y_low, x_high]
        + ly * hx * plane[:, y_high, x_low]
        + ly * lx * plane[:, y_high, x_high]
    )
    return np.where(empty, 0.0, v)


def roi_align(
    x: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> np.ndarray:
    """torchvision ``roi_align`` (average pooling of bilinear samples) -> ``[K, C, oh, ow]``.

    ``sampling_ratio <= 0`` means adaptive (``ceil(roi_size / output_size)`` samples per bin,
    per box). ``aligned=False`` clamps box width/height to at least 1 (legacy torchvision).
    Samples farther than one pixel outside the feature map contribute 0; an empty box list gives
    an empty output. Computed in float64, returned in ``x.dtype``.
    """
    if x.ndim != 4:
        raise ValueError(f"roi_align expects NCHW features, got shape {x.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4 or batch_indices.shape != (rois.shape[0],):
        raise ValueError(f"roi_align expects rois [K,4] and batch_indices [K], got {rois.shape}, {batch_indices.shape}")
    oh, ow = _pair(output_size, "output_size")
    if oh <= 0 or ow <= 0:
        raise ValueError("output_size must be positive")
    n, c, h, w = x.shape
    k = rois.shape[0]
    out = np.zeros((k, c, oh, ow), dtype=np.float64)
    xf = x.astype(np.float64)
    offset = 0.5 if aligned else 0.0
    for r in range(k):
        b = int(batch_indices[r])
        if not 0 <= b < n:
            raise ValueError(f"roi_align batch index {b} out of range [0, {n})")
        x1, y1, x2, y2 = (float(v) for v in rois[r])
        sx, sy = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        rw, rh = x2 * spatial_scale - offset - sx, y2 * spatial_scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rh / oh))
        gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rw / ow))
        count = max(gh * gw, 1)
        if gh <= 0 or gw <= 0:
            continue  # degenerate box with adaptive sampling: no samples, output 0 (as torchvision)
        iy = (np.arange(gh) + 0.5) * bh / gh
        ix = (np.arange(gw) + 0.5) * bw / gw
        ys = sy + np.arange(oh)[:, None] * bh + iy[None, :]  # [oh, gh]
        xs = sx + np.arange(ow)[:, None] * bw + ix[None, :]  # [ow, gw]
        yy = np.broadcast_to(ys[:, None, :, None], (oh, ow, gh, gw))
        xx = np.broadcast_to(xs[None, :, None, :], (oh, ow, gh, gw))
        vals = _bilinear(xf[b], yy, xx)  # [C, oh, ow, gh, gw]
        out[r] = vals.sum(axis=(3, 4)) / count
    return out.astype(x.dtype)
