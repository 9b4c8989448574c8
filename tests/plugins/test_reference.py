"""segdeploy.plugins.reference matches PyTorch / torchvision on the CPU (the plugins' ground truth)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segdeploy.plugins import reference as ref

torchvision = pytest.importorskip("torchvision", reason="torchvision is needed for roi_align parity")

POOL_CASES = [
    # kernel, stride, padding, dilation, ceil_mode, H, W
    (2, 2, 0, 1, False, 16, 16),
    (2, 2, 0, 1, True, 17, 15),
    (3, 2, 1, 1, False, 17, 16),
    (3, 2, 1, 1, True, 17, 16),
    ((2, 3), (2, 1), (1, 1), (2, 1), False, 13, 11),
    ((3, 3), (3, 2), (1, 0), (1, 2), True, 14, 19),
    (3, 1, 1, 1, False, 5, 7),
]


@pytest.mark.parametrize("k,s,p,d,ceil,h,w", POOL_CASES)
def test_max_pool_with_indices_matches_torch(k, s, p, d, ceil, h, w):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, h, w, generator=g)
    x[0, 0, :2, :2] = 1.5  # ties: PyTorch keeps the first position
    y, i = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
    ry, ri = ref.max_pool2d_with_indices(x.numpy(), k, s, p, d, ceil)
    assert ry.shape == tuple(y.shape) and ri.dtype == np.int64
    np.testing.assert_array_equal(ri, i.numpy())
    np.testing.assert_array_equal(ry, y.numpy())


def test_max_pool_nan_and_inf_follow_torch():
    x = torch.full((1, 1, 4, 4), -float("inf"))
    x[0, 0, 0, 1] = float("nan")
    x[0, 0, 1, 0] = float("nan")
    y, i = F.max_pool2d(x, 2, 2, return_indices=True)
    ry, ri = ref.max_pool2d_with_indices(x.numpy(), 2, 2)
    np.testing.assert_array_equal(ri, i.numpy())
    np.testing.assert_array_equal(np.isnan(ry), torch.isnan(y).numpy())


# (14, 19) with kernel 3 / stride (3, 2) is not an output_size PyTorch's max_unpool2d accepts.
@pytest.mark.parametrize("k,s,p,d,ceil,h,w", [c for c in POOL_CASES if c[5:] != (14, 19)])
def test_max_unpool_matches_torch(k, s, p, d, ceil, h, w):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    y, i = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
    out = F.max_unpool2d(y * 2, i, k, s, p, output_size=(h, w))
    r = ref.max_unpool2d((y * 2).numpy(), i.numpy(), output_size=(h, w))
    np.testing.assert_array_equal(r, out.numpy())


def test_max_unpool_default_size_and_errors():
    x = torch.randn(1, 2, 8, 6)
    y, i = F.max_pool2d(x, 2, 2, return_indices=True)
    np.testing.assert_array_equal(ref.max_unpool2d(y.numpy(), i.numpy(), 2, 2), F.max_unpool2d(y, i, 2, 2).numpy())
    bad = i.numpy().copy()
    bad[0, 0, 0, 0] = 48
    with pytest.raises(ValueError, match="out of range"):
        ref.max_unpool2d(y.numpy(), bad, output_size=(8, 6))


ROI_CASES = [
    # output, scale, sampling_ratio, aligned
    ((7, 7), 0.5, 0, True),
    ((7, 7), 0.5, 0, False),
    ((3, 5), 1.0, 2, True),
    ((2, 2), 0.25, -1, False),
    ((4, 4), 1.0, 1, False),
]


def _boxes(k: int, n: int, size: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * size * 1.2 - 0.1 * size  # some outside the image
    wh = torch.rand(k, 2, generator=g) * size * 0.6
    b = torch.randint(0, n, (k, 1), generator=g).float()
    boxes = torch.cat([b, xy, xy + wh], dim=1)
    boxes[0, 1:] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # degenerate (zero-area) box
    boxes[1, 1:] = torch.tensor([-50.0, -50.0, -40.0, -45.0])  # far outside
    return boxes


@pytest.mark.parametrize("out,scale,sr,aligned", ROI_CASES)
def test_roi_align_matches_torchvision(out, scale, sr, aligned):
    x = torch.randn(2, 4, 12, 10, generator=torch.Generator().manual_seed(2))
    boxes = _boxes(9, 2, 12 / scale, seed=3)
    want = torchvision.ops.roi_align(x, boxes, out, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
    rois, bidx = ref.split_boxes(boxes.numpy())
    got = ref.roi_align(x.numpy(), rois, bidx, out, scale, sr, aligned)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_roi_align_empty_boxes():
    x = torch.randn(1, 3, 8, 8)
    boxes = torch.zeros(0, 5)
    want = torchvision.ops.roi_align(x, boxes, (2, 2), 1.0, 0, True)
    got = ref.roi_align(x.numpy(), np.zeros((0, 4), np.float32), np.zeros(0, np.int64), (2, 2), 1.0, 0, True)
    assert got.shape == tuple(want.shape) == (0, 3, 2, 2)
