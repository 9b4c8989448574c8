"""TensorHistogram: exact power-of-two re-binning, merging, order independence."""

from __future__ import annotations

import numpy as np
import pytest

from segdeploy.calibration.collect import TensorHistogram
from segdeploy.calibration.histogram import CHUNK, PIECE, Binner, NonFiniteError, count_bins
from segdeploy.errors import UsageError


def one_shot(data: np.ndarray, num_bins: int, range_max: float) -> np.ndarray:
    a = np.abs(data.astype(np.float64))
    return np.histogram(a, bins=num_bins, range=(0.0, range_max))[0]


def test_rebinning_equals_one_shot_histogram():
    rng = np.random.default_rng(0)
    # growing ranges: every chunk raises the max, forcing merges by 2, 4, ... and a jump by 2**12 (> bins)
    chunks = [rng.normal(scale=s, size=5000).astype(np.float32) for s in (0.01, 0.03, 0.5, 2.0, 7.0, 300.0)]
    h = TensorHistogram(2048)
    for c in chunks:
        h.update(c)
    data = np.concatenate(chunks)
    assert h.absmax == float(np.abs(data).max())
    assert h.range_max > h.absmax and np.log2(h.range_max).is_integer()
    assert h.count == data.size
    np.testing.assert_array_equal(h.hist, one_shot(data, 2048, h.range_max))


def test_rebinning_exact_on_bin_edges():
    # values exactly on bin edges and exactly on old range boundaries (powers of two)
    h = TensorHistogram(16)
    first = np.array([0.0, 0.5, 0.25, 0.75, 0.9999], np.float32)
    second = np.array([1.0, 2.0, 3.0, 3.75, 0.125], np.float32)
    h.update(first)
    assert h.range_max == 1.0
    h.update(second)
    assert h.range_max == 4.0
    np.testing.assert_array_equal(h.hist, one_shot(np.concatenate([first, second]), 16, 4.0))


def test_order_and_chunking_do_not_matter():
    rng = np.random.default_rng(1)
    data = np.concatenate([rng.standard_cauchy(20000), rng.normal(size=20000)]).astype(np.float32)
    hs = []
    for split, perm in ((1, False), (7, False), (50, True)):
        d = rng.permutation(data) if perm else data
        h = TensorHistogram()
        for c in np.array_split(d, split):
            h.update(c)
        hs.append(h)
    for h in hs[1:]:
        np.testing.assert_array_equal(h.hist, hs[0].hist)
        assert h.range_max == hs[0].range_max and h.absmax == hs[0].absmax


def test_merge_is_exact():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=1000).astype(np.float32), (rng.normal(size=1000) * 50).astype(np.float32)
    ha, hb, hall = TensorHistogram(), TensorHistogram(), TensorHistogram()
    ha.update(a)
    hb.update(b)
    hall.update(np.concatenate([a, b]))
    ha.merge(hb)
    np.testing.assert_array_equal(ha.hist, hall.hist)
    assert ha.range_max == hall.range_max and ha.count == 2000


def test_all_zero_then_values():
    h = TensorHistogram(64)
    h.update(np.zeros(100, np.float32))
    assert h.hist[0] == 100 and h.range_max == 0.0 and h.absmax == 0.0
    h.update(np.array([3.0], np.float32))
    assert h.range_max == 4.0 and h.hist[0] == 100 and h.hist.sum() == 101


def test_bins_must_be_power_of_two():
    with pytest.raises(UsageError, match="power of two"):
        TensorHistogram(1000)


def test_range_jump_larger_than_bin_count():
    small = np.array([0.1, 0.2, 0.05], np.float32)
    big = np.array([100.0], np.float32)  # range 0.25 -> 128: factor 512 > 16 bins
    h = TensorHistogram(16)
    h.update(small)
    h.update(big)
    np.testing.assert_array_equal(h.hist, one_shot(np.concatenate([small, big]), 16, 128.0))


@pytest.mark.parametrize("size", [1, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 2 * PIECE + 3])
def test_count_bins_equals_bincount_of_floor(size):
    rng = np.random.default_rng(size)
    x = (rng.standard_cauchy(size) * 0.1).astype(np.float32)
    x[7::7] = 0.0
    x[1::11] = -x[1::11]
    h = TensorHistogram(256)
    h.observe(float(np.abs(x).max()), x.size)
    ref = np.bincount((np.abs(x) * np.float32(256 / h.range_max)).astype(np.intp), minlength=256)
    np.testing.assert_array_equal(count_bins(x, h.bin_scale, 256), ref)
    for workers in (1, 3):
        g = TensorHistogram(256)
        g.observe(h.absmax, x.size)
        with Binner(workers) as b:
            b.add(g, x)
            b.finish()
        np.testing.assert_array_equal(g.hist, ref)


def test_binner_all_zero_tensor_goes_to_bin_zero():
    h = TensorHistogram(16)
    h.observe(0.0, 5)
    with Binner(2) as b:
        b.add(h, np.zeros(5, np.float32))
        b.finish()
    assert h.hist[0] == 5 and h.range_max == 0.0


def test_nonfinite_update_folds_nothing():
    h = TensorHistogram(16)
    h.update(np.array([1.0, -3.0], np.float32))
    before = (h.hist.copy(), h.absmax, h.count)
    for bad, word in ((np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")):
        x = np.array([0.5, 2.0, bad, 1.0], np.float32)
        with pytest.raises(NonFiniteError, match=word):
            h.update(x)
        np.testing.assert_array_equal(h.hist, before[0])
        assert (h.absmax, h.count) == before[1:]
