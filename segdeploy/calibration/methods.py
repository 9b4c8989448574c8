"""Range methods: histogram of |x| -> amax (symmetric range [-amax, amax], INT8 scale = amax / 127).

* ``max``        the exact running max of |x| (not a bin edge).
* ``percentile`` the upper edge of the bin where the cumulative share of |x| reaches ``percentile`` %,
                 capped at the max (so at least that share of values lies inside the range).
* ``entropy``    TensorRT's KL-divergence threshold search, ported from NVIDIA pytorch-quantization's
                 ``_compute_amax_entropy`` (itself a port of TensorRT's EntropyCalibration2): bin 0 is
                 replaced by bin 1 (the spike of exact zeros after ReLU is ignored); for every candidate
                 ``i`` in ``start_bin .. n`` the reference P is ``hist[:i]`` with the outlier mass
                 ``sum(hist[i:])`` added to its last bin, Q is ``hist[:i]`` quantized to ``num_quant_bins``
                 (128 for signed int8) levels via ``digitize(range(i), linspace(0, i, 129))``, each level's mass
                 spread evenly over its non-empty bins; KL(P||Q) as ``scipy.stats.entropy``; the LAST
                 minimum wins; amax = edge ``i`` (capped at the max). The search runs over the histogram
                 trimmed after its last non-empty bin, because pytorch-quantization's histogram ends at the
                 observed max while ours ends at the next power of two (see collect.py).
* ``auto``       the default: ``entropy`` per tensor, ``percentile`` where entropy's threshold would clip more
                 than 0.01 % of the tensor's values (a long tail); the rule and why: :mod:`.tail_rule`.
                 :func:`compute_ranges_chosen` also returns the kind chosen per tensor.
* ``mse``        pytorch-quantization's ``_compute_amax_mse``: the bin centre (from ``start_bin``) whose
                 fake-quantized bin centres have the least count-weighted squared error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segdeploy.calibration.tail_rule import RULE, choose
from segdeploy.errors import UsageError
from segdeploy.vocab import DEFAULT_CALIB_METHOD, DEFAULT_PERCENTILE, CalibMethod



@dataclass(frozen=True)
class Method:
    """A range method and its parameters."""

    kind: str = DEFAULT_CALIB_METHOD
    percentile: float = DEFAULT_PERCENTILE
    num_quant_bins: int = 128
    start_bin: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", CalibMethod.parse(self.kind, "--calib-method"))
        if not (0.0 < self.percentile <= 100.0):
            raise UsageError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.num_quant_bins < 2 or self.start_bin < 1:
            raise UsageError("num_quant_bins must be >= 2 and start_bin >= 1")

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        if self.kind in (CalibMethod.PERCENTILE, CalibMethod.AUTO):
            d["percentile"] = self.percentile
        if self.kind in (CalibMethod.ENTROPY, CalibMethod.MSE, CalibMethod.AUTO):
            d["start_bin"] = self.start_bin
        if self.kind in (CalibMethod.ENTROPY, CalibMethod.AUTO):
            d["num_quant_bins"] = self.num_quant_bins
        if self.kind == CalibMethod.AUTO:
            d["rule"] = RULE
        return d

    @property
    def needs_histogram(self) -> bool:
        """Whether this method reads the |x| histogram; ``max`` needs only the exact max |x|."""
        return CalibMethod(self.kind).needs_histogram

    @property
    def label(self) -> str:
        return f"percentile{self.percentile:g}" if self.kind == "percentile" else self.kind


def amax_percentile(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    total = hist.sum()
    if total == 0:
        return 0.0
    cdf = np.cumsum(hist, dtype=np.float64) / float(total)
    idx = int(np.searchsorted(cdf, percentile / 100.0 - 1e-12))
    idx = min(idx, len(hist) - 1)
    return float(edges[idx + 1])


def entropy_divergences(hist: np.ndarray, num_quant_bins: int = 128, start_bin: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """KL(P||Q) for every candidate ``i`` in ``start_bin .. len(hist)``. Returns (candidates, divergences).

    Same quantity as the per-candidate loop of pytorch-quantization, computed in closed form from prefix
    sums: level ``k`` of candidate ``i`` holds bins ``ceil(space[k]) <= j < ceil(space[k+1])`` with
    ``space = np.linspace(0, i, num_quant_bins + 1)`` (exactly ``np.digitize``'s assignment); over its
    ``c_k`` non-empty bins with mass ``S_k`` Q is ``S_k / c_k``, so with ``P = total``, ``Qs = sum(bins[:i])``
    ``KL = sum_k (sum_j b_j log b_j - S_k log P - S_k log(S_k / c_k) + S_k log Qs) / P`` plus the correction
    for the last bin, whose reference mass is ``b_{i-1} + sum(bins[i:])``. O(len(hist) * levels), vectorised.
    """
    bins = hist.astype(np.float64).copy()
    if len(bins) > 1:
        bins[0] = bins[1]
    n = len(bins)
    nq = num_quant_bins
    start = min(start_bin, n)
    cands = np.arange(start, n + 1)
    if len(cands) == 0:
        return cands, np.empty(0)
    nz = bins > 0
    blogb = np.where(nz, bins * np.log(np.where(nz, bins, 1.0)), 0.0)
    B = np.concatenate([[0.0], np.cumsum(bins)])
    N = np.concatenate([[0], np.cumsum(nz)])
    L = np.concatenate([[0.0], np.cumsum(blogb)])
    total = B[-1]
    space = np.linspace(0, cands, num=nq + 1, axis=1)  # [C, nq+1]
    edges = np.minimum(np.ceil(space).astype(np.int64), cands[:, None])
    lo = edges[:, :-1]
    # level sums as differences of prefix sums at the level edges (one gather per prefix array)
    S = np.diff(B[edges], axis=1)
    cnt = np.diff(N[edges], axis=1)
    BL = np.diff(L[edges], axis=1)
    qs = B[cands]  # sum of Q's mass = sum(bins[:i])
    has = cnt > 0
    avg = np.divide(S, cnt, out=np.ones_like(S), where=has)
    log_p = np.log(total) if total > 0 else 0.0
    log_qs = np.log(np.where(qs > 0, qs, 1.0))
    terms = np.where(has, BL - S * log_p - S * np.log(avg) + S * log_qs[:, None], 0.0)
    kl = terms.sum(axis=1)
    # last bin j = i - 1: reference mass b + tail instead of b
    last = cands - 1
    b = bins[last]
    tail = total - B[cands]
    p_last = b + tail
    level_last = np.sum(lo <= last[:, None], axis=1) - 1
    avg_last = avg[np.arange(len(cands)), level_last]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
        corr = plogp - blogb[last] - tail * log_p - tail * (np.log(avg_last) - log_qs)
    kl = np.where(b > 0, kl + corr, kl) / (total if total > 0 else 1.0)
    bad = (qs <= 0) | ((b == 0) & (tail > 0)) | (total <= 0)
    kl[bad] = np.inf
    return cands, kl


def amax_entropy(hist: np.ndarray, edges: np.ndarray, num_quant_bins: int = 128, start_bin: int = 128) -> float:
    nzi = np.nonzero(hist)[0]
    if len(nzi) == 0:
        return 0.0
    last = int(nzi[-1]) + 1
    h = hist[:last]
    if last <= start_bin:
        return float(edges[last])  # everything fits below the first candidate: no clipping possible
    cands, divs = entropy_divergences(h, num_quant_bins, start_bin)
    if not np.isfinite(divs).any():
        return float(edges[last])
    best = len(divs) - 1 - int(np.argmin(divs[::-1]))
    return float(edges[int(cands[best])])


def amax_mse(hist: np.ndarray, edges: np.ndarray, start_bin: int = 128, bound: int = 127) -> float:
    nzi = np.nonzero(hist)[0]
    if len(nzi) == 0:
        return 0.0
    centers = (edges[1:] + edges[:-1]) / 2.0
    counts = hist.astype(np.float64)
    last = int(nzi[-1]) + 1
    if last <= start_bin:
        return float(edges[last])
    best_i, best = None, np.inf
    # candidates chunked to bound memory: (chunk x bins)
    cand = np.arange(start_bin, last)
    c = centers[:last]
    w = counts[:last]
    for s in range(0, len(cand), 256):
        amax = centers[cand[s:s + 256]][:, None]
        scale = bound / amax
        q = np.clip(np.round(c[None, :] * scale), -bound, bound) / scale
        mse = (((q - c[None, :]) ** 2) * w[None, :]).mean(axis=1)
        k = int(np.argmin(mse))
        if mse[k] < best:
            best, best_i = float(mse[k]), int(cand[s + k])
    return float(centers[best_i])


def compute_amax(h, method: Method) -> float:
    """amax of one tensor's statistic by ``method`` (never above its max): a
    :class:`~segdeploy.calibration.histogram.TensorHistogram`, or for ``max`` also a ``TensorRange``."""
    return compute_amax_chosen(h, method)[0]


def _amax_by(h, method: Method, kind: str) -> float:
    if kind == CalibMethod.PERCENTILE:
        return amax_percentile(h.hist, h.edges, method.percentile)
    if kind == CalibMethod.ENTROPY:
        return amax_entropy(h.hist, h.edges, method.num_quant_bins, method.start_bin)
    return amax_mse(h.hist, h.edges, method.start_bin)


def compute_amax_chosen(h, method: Method) -> tuple[float, str]:
    """(amax, the method kind that chose it) for one tensor: ``method.kind`` itself, or for ``auto`` the kind
    its per-tensor rule picked (:func:`segdeploy.calibration.tail_rule.choose`)."""
    kind = str(method.kind)
    if kind == CalibMethod.MAX:
        return float(h.absmax), kind
    if not getattr(h, "histogram", False):
        raise UsageError(f"the {kind} method needs histograms; these statistics hold only the max |x|")
    if h.absmax == 0.0 or h.range_max == 0.0:
        return 0.0, (CalibMethod.ENTROPY.value if kind == CalibMethod.AUTO else kind)
    if kind == CalibMethod.AUTO:
        a, kind = choose(h.hist, h.edges, _amax_by(h, method, CalibMethod.ENTROPY),
                         _amax_by(h, method, CalibMethod.PERCENTILE))
    else:
        a = _amax_by(h, method, kind)
    return float(min(a, h.absmax)), kind


def compute_ranges(stats, method: Method, names=None) -> dict[str, float]:
    """amax for every tensor of ``stats`` (or only ``names``), in graph order."""
    return compute_ranges_chosen(stats, method, names)[0]


def compute_ranges_chosen(stats, method: Method, names=None) -> tuple[dict[str, float], dict[str, str]]:
    """(amax per tensor, method kind chosen per tensor) for every tensor of ``stats`` (or only ``names``), in
    graph order. The kinds are all ``method.kind`` except for ``auto``."""
    keys = list(stats.tensors) if names is None else list(names)
    missing = [k for k in keys if k not in stats.tensors]
    if missing:
        raise UsageError(f"no statistics for tensor(s) {', '.join(missing[:5])}; collect them first")
    if method.needs_histogram and not stats.histograms:
        raise UsageError(f"the {method.kind} method needs histograms but these statistics hold only the max |x|; "
                         "collect them with CollectOptions(histograms=True)")
    if not method.needs_histogram or len(keys) < 2:
        pairs = [compute_amax_chosen(stats.tensors[k], method) for k in keys]
    else:
        from concurrent.futures import ThreadPoolExecutor

        from segdeploy.calibration.histogram import default_workers

        # the searches are independent NumPy work per tensor (the GIL is released inside it): one thread per CPU
        with ThreadPoolExecutor(min(default_workers(), len(keys))) as pool:
            pairs = list(pool.map(lambda k: compute_amax_chosen(stats.tensors[k], method), keys))
    return ({k: a for k, (a, _) in zip(keys, pairs)}, {k: kind for k, (_, kind) in zip(keys, pairs)})
