"""Range methods vs NumPy references on synthetic distributions; entropy vs a literal port of
pytorch-quantization's ``_compute_amax_entropy`` (loops kept as in the original)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from segdeploy.calibration.collect import TensorHistogram
from segdeploy.calibration.methods import Method, amax_entropy, compute_amax
from segdeploy.errors import UsageError


def reference_entropy(calib_hist, calib_bin_edges, num_bits=8, unsigned=False, stride=1, start_bin=128):
    """pytorch-quantization's algorithm, loop for loop (scipy.stats.entropy written out)."""

    def entropy(pk, qk):
        if qk.sum() == 0:
            return np.inf
        pk = pk / pk.sum()
        qk = qk / qk.sum()
        out = 0.0
        for p, q in zip(pk, qk):
            if p > 0 and q > 0:
                out += p * np.log(p / q)
            elif p > 0:
                return np.inf
        return out

    bins = calib_hist[:].astype(np.float64)
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences = []
    for i in range(start_bin, len(bins) + 1, stride):
        new_density_counts = np.zeros(nbins, dtype=np.float64)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, d in enumerate(digitized_space):
            if d != -1:
                new_density_counts[d] += bins[idx]
        for key, val in Counter(digitized_space).items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i, dtype=np.float64)
        for idx, d in enumerate(digitized_space):
            if d != -1:
                new_density[idx] = new_density_counts[d]
        reference_density = np.array(bins[: len(digitized_space)])
        reference_density[-1] += np.sum(bins[i:])
        divergences.append(entropy(reference_density, new_density))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return calib_bin_edges[last_argmin * stride + start_bin]


def hist_of(data, bins=2048):
    h = TensorHistogram(bins)
    for c in np.array_split(np.asarray(data, np.float32), 5):
        h.update(c)
    return h


@pytest.fixture(scope="module")
def gaussian_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200_000)
    x[:30] = rng.uniform(20, 40, size=30) * rng.choice([-1, 1], size=30)
    return x.astype(np.float32)


def test_max_is_exact(gaussian_outliers):
    h = hist_of(gaussian_outliers)
    assert compute_amax(h, Method("max")) == float(np.abs(gaussian_outliers).max())


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_within_one_bin_of_numpy(gaussian_outliers, p):
    h = hist_of(gaussian_outliers)
    ref = float(np.percentile(np.abs(gaussian_outliers), p))
    got = compute_amax(h, Method("percentile", percentile=p))
    assert ref <= got + 1e-6 and got - ref <= h.bin_width + 1e-6
    # at least p% of the values lie inside [-amax, amax]
    assert np.mean(np.abs(gaussian_outliers) <= got) >= p / 100


def test_entropy_clips_outliers(gaussian_outliers):
    h = hist_of(gaussian_outliers)
    ent = compute_amax(h, Method("entropy"))
    mx = compute_amax(h, Method("max"))
    assert 2.5 < ent < 8.0 < mx  # clips the outliers, keeps the Gaussian body (sigma 1)


_DISTS = {
    "laplace_tail": lambda r: np.concatenate([r.laplace(size=50_000), r.uniform(10, 12, size=20)]),
    "relu": lambda r: np.maximum(r.normal(size=30_000), 0),
    "sparse_levels": lambda r: r.integers(0, 5, 3000) * 1.0,
    "cauchy": lambda r: r.standard_cauchy(30_000),
}


@pytest.mark.parametrize("dist", sorted(_DISTS))
@pytest.mark.parametrize("bins", [256, 512])
def test_entropy_matches_literal_port(dist, bins):
    x = _DISTS[dist](np.random.default_rng(3)).astype(np.float32)
    h = hist_of(x, bins=bins)
    nz = np.nonzero(h.hist)[0][-1] + 1
    ref = reference_entropy(h.hist[:nz].copy(), h.edges[: nz + 1])
    got = amax_entropy(h.hist, h.edges)
    assert got == float(ref)  # same candidate chosen, bit for bit
    assert compute_amax(h, Method("entropy")) == min(float(ref), h.absmax)


def test_entropy_uniform_keeps_full_range():
    x = np.random.default_rng(4).uniform(-1, 1, size=100_000).astype(np.float32)
    h = hist_of(x)
    assert compute_amax(h, Method("entropy")) > 0.95


def test_methods_independent_of_batching(gaussian_outliers):
    a, b = TensorHistogram(), TensorHistogram()
    a.update(gaussian_outliers)
    for c in np.array_split(np.random.default_rng(5).permutation(gaussian_outliers), 33):
        b.update(c)
    for m in (Method("max"), Method("percentile", percentile=99.99), Method("entropy"), Method("mse")):
        assert compute_amax(a, m) == compute_amax(b, m)


def test_mse_between_body_and_max(gaussian_outliers):
    h = hist_of(gaussian_outliers)
    got = compute_amax(h, Method("mse"))
    assert 0 < got < compute_amax(h, Method("max"))


def test_all_zero_tensor_gives_zero():
    h = hist_of(np.zeros(100))
    for kind in ("max", "percentile", "entropy", "mse"):
        assert compute_amax(h, Method(kind)) == 0.0


def test_bad_method_options():
    with pytest.raises(UsageError, match="unknown --calib-method"):
        Method("kl")
    with pytest.raises(UsageError, match="percentile"):
        Method("percentile", percentile=120)
