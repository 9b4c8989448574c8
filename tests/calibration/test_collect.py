"""Streaming collection with ONNX Runtime: tensor choice, batch-size independence, NaN detection."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from calib_helpers import make_model

from segdeploy.calibration.collect import CollectOptions, TensorHistogram, calibratable_tensors, collect_statistics
from segdeploy.calibration.methods import Method, compute_ranges
from segdeploy.errors import DataError, UsageError


def batches(n, bs, seed=0, hw=(24, 32)):
    x = np.random.default_rng(seed).normal(size=(n, 3, *hw)).astype(np.float32)
    return [x[i : i + bs] for i in range(0, n, bs)], x


def test_calibratable_tensors_are_float_activations(tiny_model):
    assert calibratable_tensors(onnx.load(str(tiny_model))) == ["input", "conv1", "relu1", "logits"]


def test_quantizable_inputs(tiny_model):
    from segdeploy.calibration.collect import quantizable_inputs

    assert quantizable_inputs(onnx.load(str(tiny_model))) == ["input", "relu1"]  # the two Conv inputs


def test_constant_subgraphs_are_skipped(tmp_path):
    names = calibratable_tensors(onnx.load(str(make_model(tmp_path / "m.onnx", nan_after_relu=True))))
    assert "big" not in names and names == ["input", "conv1", "relu1", "shifted", "bad_sqrt", "logits"]


def test_statistics_match_numpy_and_do_not_depend_on_batch_size(tiny_model):
    import onnxruntime as ort

    parts1, x = batches(10, 1)
    parts4, _ = batches(10, 4)
    s1 = collect_statistics(tiny_model, parts1)
    s4 = collect_statistics(tiny_model, reversed(parts4))
    assert s1.images == s4.images == 10
    # reference: the same tensors from one full run, histogrammed in one go
    m = onnx.load(str(tiny_model))
    for n in ("conv1", "relu1"):
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip(["logits", "conv1", "relu1"], sess.run(["logits", "conv1", "relu1"], {"input": x})))
    outs["input"] = x
    for name, ref in outs.items():
        r = TensorHistogram()
        r.update(ref)
        # activations agree across batchings up to ORT's float rounding; max is exact per element
        assert s1.tensors[name].absmax == pytest.approx(float(np.abs(ref).max()), rel=1e-5)
        assert s1.tensors[name].range_max == r.range_max == s4.tensors[name].range_max
        assert np.abs(s1.tensors[name].hist - r.hist).sum() <= 1e-4 * ref.size + 2
        assert np.abs(s1.tensors[name].hist - s4.tensors[name].hist).sum() <= 1e-4 * ref.size + 2
    for kind in ("max", "percentile", "entropy"):
        a, b = compute_ranges(s1, Method(kind)), compute_ranges(s4, Method(kind))
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=2 * s1.tensors[k].bin_width)


def test_nan_names_the_tensor(tmp_path):
    model = make_model(tmp_path / "nan.onnx", nan_after_relu=True)
    parts, _ = batches(2, 2)
    with pytest.raises(DataError, match=r"NaN in tensor 'bad_sqrt' during calibration"):
        collect_statistics(model, parts)


def test_tensor_selection(tiny_model):
    parts, _ = batches(2, 2)
    s = collect_statistics(tiny_model, parts, CollectOptions(tensors=("relu1",)))
    assert list(s.tensors) == ["relu1"]
    with pytest.raises(UsageError, match="w1 are not float activations"):
        collect_statistics(tiny_model, parts, CollectOptions(tensors=("w1",)))


def test_no_batches(tiny_model):
    with pytest.raises(DataError, match="no batch"):
        collect_statistics(tiny_model, [])


def test_bad_batch_shape_is_data_error(tiny_model):
    with pytest.raises(DataError, match="ONNX Runtime failed on a calibration batch of shape"):
        collect_statistics(tiny_model, [np.zeros((1, 4, 8, 8), np.float32)])


def test_large_model_path_uses_external_data(tiny_model, monkeypatch):
    import segdeploy.calibration.collect as collect

    parts, _ = batches(4, 2)
    ref = collect_statistics(tiny_model, parts)
    monkeypatch.setattr(collect, "_PROTO_LIMIT", 0)  # take the > 2 GB route (temp copy with external data)
    got = collect_statistics(tiny_model, parts)
    for n in ref.tensors:
        np.testing.assert_array_equal(got.tensors[n].hist, ref.tensors[n].hist)


def test_python_side_memory_is_flat_in_images(tiny_model):
    """numpy allocations (tracemalloc) peak at one batch's worth, whatever the number of batches."""
    import tracemalloc

    def peak(nbatches):
        x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
        tracemalloc.start()
        collect_statistics(tiny_model, (x for _ in range(nbatches)))
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    small, large = peak(2), peak(40)
    assert large <= small * 1.2 + 256 * 1024, (small, large)


def _resize_to_skip_model() -> onnx.ModelProto:
    """x -> Conv -> Resize(sizes = Concat(Shape(x)[:2], const H/W of the skip)) -> Conv: the U-Net decoder pattern
    whose Resize shape inference cannot finish without the constant's data (smp's decoders export like this)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(2, 4, 3, 3)).astype(np.float32), "w2")
    hw = numpy_helper.from_array(np.array([16, 16], dtype=np.int64), "hw")
    s0 = numpy_helper.from_array(np.array([0], dtype=np.int64), "s0")
    s2 = numpy_helper.from_array(np.array([2], dtype=np.int64), "s2")
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Shape", ["r1"], ["shp"]),
        helper.make_node("Slice", ["shp", "s0", "s2"], ["nc"]),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["r1", "", "", "sizes"], ["up"], mode="nearest"),
        helper.make_node("Conv", ["up", "w2"], ["logits"], pads=[1, 1, 1, 1]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], [w1, w2, hw, s0, s2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_tensors_after_a_computed_resize_are_calibrated():
    """Regression: shape inference on the weightless copy stopped at such a Resize, every tensor after it lost its
    type, and the convolutions of smp decoders were silently left in float for want of a range."""
    from segdeploy.calibration.collect import quantizable_inputs

    model = _resize_to_skip_model()
    assert "up" in calibratable_tensors(model)
    assert quantizable_inputs(model) == ["input", "up"]  # the two Conv inputs, the second after the Resize


def test_runs_are_split_to_bound_their_memory(tiny_model, monkeypatch):
    """With histograms, a batch runs in chunks whose outputs fit ``run_bytes`` (one image while unmeasured): the
    statistics equal one-batch runs', and no run exceeds the budget."""
    import segdeploy.calibration.collect as collect

    seen: list[int] = []
    real_run = collect._run
    def counting_run(sess, name, plan, arr):
        seen.append(arr.shape[0])
        return real_run(sess, name, plan, arr)

    monkeypatch.setattr(collect, "_run", counting_run)
    parts, _ = batches(10, 10)
    whole = collect_statistics(tiny_model, parts)
    assert seen[:2] == [1, 1] and sum(seen) == 10 and len(seen) == 3  # two measured singles, then the rest at once
    seen.clear()
    split = collect_statistics(tiny_model, parts, CollectOptions(run_bytes=1))
    assert seen == [1] * 10  # nothing fits: one image per run
    for name, t in whole.tensors.items():
        assert t.absmax == split.tensors[name].absmax and t.range_max == split.tensors[name].range_max
        assert np.array_equal(t.hist, split.tensors[name].hist)
