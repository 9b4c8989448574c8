"""Ranges equal the pre-issue-18 implementation's (goldens in data/, made by data/make_golden.py at 84741c8).

``max`` must be bit-identical; the histogram methods within one bin width (they are identical today).
The goldens hold the activations of ONNX Runtime on the machine that made them; where this machine's ONNX
Runtime computes other float32 activations for the same model (another CPU kernel), the comparison with the
goldens is skipped with that reason -- the comparison with a direct reference below runs everywhere.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from segdeploy.calibration import Method, calibrate, iter_batches, open_calibration_set
from segdeploy.calibration.histogram import TensorHistogram

_SPEC = importlib.util.spec_from_file_location("make_golden", Path(__file__).resolve().parent / "data" / "make_golden.py")
golden = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(golden)  # the recipe: model, images, batch size, method cases
GOLD = json.loads(golden.RANGES.read_text())


def _batches():
    pre, prof = golden.spec()
    cset = open_calibration_set(golden.IMAGES, profile=prof, preprocess=pre)
    return [b.array for b in iter_batches(cset, pre, prof, golden.BATCH)]


def _reference_statistics() -> dict[str, TensorHistogram]:
    """The definition, the pre-issue-18 way: every tensor as a graph output of one ORT_ENABLE_BASIC session,
    folded with numpy (np.abs(x).max(), floor(|x| * n / R) by np.bincount)."""
    import onnx
    import onnxruntime as ort

    from segdeploy.calibration import calibratable_tensors

    model = onnx.load(str(golden.MODEL))
    names = calibratable_tensors(model)
    outputs = {o.name for o in model.graph.output}
    for n in names[1:]:
        if n not in outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    hists = {n: TensorHistogram() for n in names}
    for x in _batches():
        values = dict(zip(names[1:], sess.run(names[1:], {names[0]: x})), **{names[0]: x})
        for n in names:
            h, a = hists[n], np.abs(values[n].astype(np.float32).ravel())
            m = float(a.max())
            h.count += a.size
            h.absmax = max(h.absmax, m)
            if m > 0 and m >= h.range_max:
                h._grow(h._range_for(m))
            if h.range_max == 0:
                h.hist[0] += a.size
            else:
                h.hist += np.bincount((a * np.float32(h.num_bins / h.range_max)).astype(np.intp), minlength=h.num_bins)
    return hists


@pytest.fixture(scope="module")
def reference():
    return _reference_statistics()


def _calibrate(kind_kwargs: dict, **kw):
    pre, prof = golden.spec()
    return calibrate(golden.MODEL, golden.IMAGES, preprocess=pre, profile=prof, method=Method(**kind_kwargs),
                     batch_size=golden.BATCH, **kw)


def test_statistics_equal_the_direct_reference(reference):
    """Platform-independent: histograms and maxima equal the one-session numpy fold, bit for bit."""
    hist = _calibrate({"kind": "entropy"}).statistics
    rng = _calibrate({"kind": "max"}).statistics
    assert list(hist.tensors) == list(reference) == list(rng.tensors)
    for n, ref in reference.items():
        h = hist.tensors[n]
        assert h.absmax == ref.absmax == rng.tensors[n].absmax, n
        assert h.count == ref.count == rng.tensors[n].count, n
        assert h.range_max == ref.range_max, n
        np.testing.assert_array_equal(h.hist, ref.hist, err_msg=n)


@pytest.mark.parametrize("label,kind_kwargs", golden.METHOD_CASES, ids=[c[0] for c in golden.METHOD_CASES])
@pytest.mark.parametrize("threads", [None, 1])
def test_ranges_equal_the_goldens(reference, label, kind_kwargs, threads):
    gold_max = GOLD["methods"]["max"]["ranges"]
    here = {n: h.absmax for n, h in reference.items()}
    if here != gold_max:
        differ = [n for n in gold_max if here.get(n) != gold_max[n]]
        pytest.skip(f"ONNX Runtime {GOLD['onnxruntime']} made the goldens; this machine's ONNX Runtime computes other "
                    f"float32 activations for {len(differ)} tensors (e.g. {differ[:2]}): compared with the direct "
                    "reference instead (test_statistics_equal_the_direct_reference)")
    gold = GOLD["methods"][label]["ranges"]
    got = _calibrate(kind_kwargs, intra_op_threads=threads).ranges
    assert list(got) == list(gold)
    if label == "max":
        assert got == gold  # bit for bit
    else:
        for n, g in gold.items():
            assert abs(got[n] - g) <= GOLD["bin_width"][n], (n, got[n], g)
