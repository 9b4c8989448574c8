"""The default method's per-tensor rule (segdeploy.calibration.tail_rule): entropy unless entropy clips a long tail.

On synthetic histograms: Gaussian and ReLU(Gaussian) keep entropy (KL clips nothing or a few values in a
million), GELU(Gaussian) and a Gaussian with sparse large outliers are long-tailed and get percentile. End to
end: calibrate() with the default method records the kind per tensor, and each tensor's range is exactly the
range of the kind it records; explicit methods are unchanged by the default's existence.
"""

from __future__ import annotations

import numpy as np
import pytest

from segdeploy.calibration.histogram import TensorHistogram
from segdeploy.calibration.methods import Method, amax_entropy, amax_percentile, compute_amax, compute_amax_chosen
from segdeploy.calibration.tail_rule import TAIL_SHARE_LIMIT, choose, is_long_tailed, tail_share
from segdeploy.vocab import DEFAULT_CALIB_METHOD, CalibMethod

N = 1_000_000


def _hist(x: np.ndarray) -> TensorHistogram:
    h = TensorHistogram()
    h.update(x.astype(np.float32))
    return h


def _gelu(x: np.ndarray) -> np.ndarray:
    return x * 0.5 * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def _samples(kind: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    g = rng.normal(size=N)
    if kind == "gaussian":
        return g
    if kind == "relu":
        return np.maximum(g, 0.0)
    if kind == "gelu":
        return _gelu(g)
    g[rng.random(N) < 1e-3] *= 30.0  # "outliers": 0.1 % of the values 30x larger (outlier features)
    return g


def test_default_is_auto():
    assert DEFAULT_CALIB_METHOD == CalibMethod.AUTO and Method().kind == "auto" and Method().needs_histogram


def test_tail_share_counts_the_bins_a_range_clips():
    h = _hist(np.array([0.1] * 9000 + [0.9] * 1000))
    assert tail_share(h.hist, h.edges, h.absmax + 1.0) == 0.0
    assert tail_share(h.hist, h.edges, 0.5) == pytest.approx(0.1)
    assert tail_share(np.zeros(4, np.int64), np.arange(5.0), 1.0) == 0.0


@pytest.mark.parametrize("kind, long_tailed", [("gaussian", False), ("relu", False), ("gelu", True), ("outliers", True)])
def test_rule_on_synthetic_histograms(kind, long_tailed):
    h = _hist(_samples(kind))
    ent = amax_entropy(h.hist, h.edges)
    pct = amax_percentile(h.hist, h.edges, 99.99)
    assert is_long_tailed(h.hist, h.edges, ent) is long_tailed
    amax, chosen = compute_amax_chosen(h, Method())
    assert chosen == ("percentile" if long_tailed else "entropy")
    assert amax == pytest.approx(min(pct if long_tailed else ent, h.absmax))
    assert choose(h.hist, h.edges, ent, pct) == ((pct, "percentile") if long_tailed else (ent, "entropy"))
    if long_tailed:  # what the rule protects: entropy would clip more than the limit, the choice clips less
        assert tail_share(h.hist, h.edges, ent) > TAIL_SHARE_LIMIT >= tail_share(h.hist, h.edges, amax)


@pytest.mark.parametrize("kind", ["max", "entropy", "percentile", "mse"])
def test_explicit_methods_choose_themselves(kind):
    h = _hist(_samples("gelu"))
    m = Method(kind)
    amax, chosen = compute_amax_chosen(h, m)
    assert chosen == kind and amax == compute_amax(h, m)
    if kind == "entropy":
        assert amax == pytest.approx(min(amax_entropy(h.hist, h.edges), h.absmax))


def test_auto_on_all_zero_tensor():
    h = _hist(np.zeros(100))
    assert compute_amax_chosen(h, Method()) == (0.0, "entropy")


def test_calibrate_default_end_to_end(tmp_path, tiny_model, images, spec):
    """The default on a small model: one collection, the kind per tensor recorded, each range the range of
    that kind computed from the same statistics, the manifest record counting them."""
    from segdeploy.calibration import calibrate
    from segdeploy.calibration.methods import compute_ranges

    pre, prof = spec
    res = calibrate(tiny_model, images, preprocess=pre, profile=prof, cache_dir=tmp_path / "cache")
    assert res.method.kind == "auto" and set(res.chosen) == set(res.ranges)
    per_kind = {k: compute_ranges(res.statistics, Method(k)) for k in ("entropy", "percentile")}
    for t, kind in res.chosen.items():
        assert res.ranges[t] == per_kind[kind][t]
    rec = res.to_manifest()["method"]
    assert rec["kind"] == "auto" and sum(rec["chosen"].values()) == len(res.ranges)
    assert res.choice_line().startswith("calibrate: default method auto (")
    # explicit entropy from the cached statistics: the plain entropy ranges, every tensor recorded as entropy
    ent = calibrate(tiny_model, images, preprocess=pre, profile=prof, cache_dir=tmp_path / "cache",
                    method=Method("entropy"))
    assert ent.cache_hit and ent.ranges == per_kind["entropy"] and set(ent.chosen.values()) == {"entropy"}
    assert "chosen" not in ent.to_manifest()["method"]


def test_calibrate_command_prints_the_default_once(tmp_path, capsys, images):
    """`segdeploy calibrate` without --calib-method: one line names the default and what it chose; with an
    explicit method the line names that method."""
    from calib_helpers import make_export_dir

    from segdeploy.cli import main

    exp = make_export_dir(tmp_path / "exp")
    assert main(["calibrate", str(exp), "--calib", str(images), "--cache-dir", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "default method auto" in ln]
    assert len(lines) == 1 and "tensors; percentile 99.99 where entropy would clip > 0.01% of the values" in lines[0]
    assert main(["calibrate", str(exp), "--calib", str(images), "--cache-dir", str(tmp_path / "c"),
                 "--calib-method", "entropy"]) == 0
    err = capsys.readouterr().err
    assert "calibrate: method entropy on 4 tensors" in err and "default method" not in err
