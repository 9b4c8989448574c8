"""In-graph probes: only what the method needs leaves ONNX Runtime; NaN/Inf anywhere in a tensor is refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from calib_helpers import make_model
from onnx import TensorProto, helper

from segdeploy.calibration.collect import (
    CollectOptions,
    TensorHistogram,
    TensorRange,
    _float_activations,
    collect_statistics,
)
from segdeploy.calibration.methods import Method, compute_ranges
from segdeploy.calibration.probes import add_probes
from segdeploy.errors import DataError, UsageError


def _log_model(path, dtype=TensorProto.FLOAT):
    """input -> Log -> 'log' (NaN where input < 0, -Inf where 0) -> Relu -> out; 'log' optionally cast."""
    nodes = [helper.make_node("Log", ["input"], ["log"])]
    feat = "log"
    if dtype != TensorProto.FLOAT:
        nodes += [helper.make_node("Cast", ["log"], ["log_cast"], to=dtype), helper.make_node("Cast", ["log_cast"], ["back"], to=1)]
        feat = "back"
    nodes.append(helper.make_node("Relu", [feat], ["out"]))
    g = helper.make_graph(nodes, "log", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


class _Batch:
    def __init__(self, array, files):
        self.array, self.files = array, files


@pytest.mark.parametrize("histograms", [False, True])
@pytest.mark.parametrize("bad,word", [(-1.0, "NaN"), (0.0, "Inf")])
def test_nonfinite_in_the_middle_of_a_tensor_is_refused(tmp_path, histograms, bad, word):
    """ORT's ReduceMax/ReduceMin skip NaNs: the L1 probe must catch one that is not the first element."""
    model = _log_model(tmp_path / "log.onnx")
    x = np.full((2, 3, 16, 16), 2.0, np.float32)
    good = _Batch(x.copy(), ("a.png", "b.png"))
    x[1, 2, 7, 9] = bad
    batches = [good, _Batch(x, ("c.png", "d.png"))]
    with pytest.raises(DataError, match=rf"^{word} in tensor 'log' during calibration \(images: c.png, d.png\)"):
        collect_statistics(model, batches, CollectOptions(histograms=histograms))


def test_nonfinite_in_a_float16_tensor(tmp_path):
    model = _log_model(tmp_path / "log16.onnx", TensorProto.FLOAT16)
    x = np.full((1, 3, 8, 8), 2.0, np.float32)
    x[0, 1, 3, 3] = -1.0
    with pytest.raises(DataError, match="NaN in tensor 'log' during"):
        collect_statistics(model, [x], CollectOptions(histograms=False))
    x[0, 1, 3, 3] = 1e5  # log fits float16; the float16 copy is folded as float32 like every tensor
    stats = collect_statistics(model, [x], CollectOptions(histograms=True))
    assert stats.tensors["log_cast"].absmax == float(np.float32(np.float16(np.log(np.float32(1e5)))))


def test_max_only_fetches_scalars(tiny_model):
    """With histograms=False no activation leaves the session: every output is a probe scalar."""
    import onnxruntime as ort

    model = onnx.load(str(tiny_model))
    types = _float_activations(model)
    plan = add_probes(model, list(types), types, keep=False)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(plan.outputs, {"input": np.ones((2, 3, 32, 32), np.float32)})
    assert all(np.asarray(o).size == 1 for o in outs)
    # relu1 is read from conv1's probes (max |relu(x)| = max(max x, 0)): no probe of its own
    assert len(outs) == 4 * (len(types) - 1)
    assert not [n for n in model.graph.node if n.input and n.input[0] == "relu1" and "segdeploy" in n.name]


def test_relu_read_from_its_input_probe(tmp_path):
    model = make_model(tmp_path / "m.onnx")
    for x in (np.full((1, 3, 8, 8), -5.0, np.float32), np.random.default_rng(9).normal(size=(2, 3, 8, 8)).astype(np.float32)):
        got = collect_statistics(model, [x], CollectOptions(histograms=False))
        ref = collect_statistics(model, [x], CollectOptions(histograms=True))
        assert got.tensors["relu1"].absmax == ref.tensors["relu1"].absmax
        assert got.tensors["relu1"].count == ref.tensors["relu1"].count


def test_probes_follow_their_producer(tiny_model):
    model = onnx.load(str(tiny_model))
    types = _float_activations(model)
    add_probes(model, list(types), types, keep=True)
    ops = [(n.op_type, list(n.input)) for n in model.graph.node]
    # input's probes first, then each producer immediately followed by the probes of its output
    assert [o for o, _ in ops] == ["ReduceMax", "ReduceMin", "ReduceL1", "Size", "Conv", "ReduceMax", "ReduceMin",
                                   "ReduceL1", "Size", "Relu", "ReduceMax", "ReduceMin", "ReduceL1", "Size", "Conv",
                                   "ReduceMax", "ReduceMin", "ReduceL1", "Size"]
    assert {o.name for o in model.graph.output} >= {"conv1", "relu1", "logits"}
    assert "input" not in {o.name for o in model.graph.output}  # the caller has it


def test_max_statistics_equal_histogram_statistics_maxima(tiny_model):
    x = np.random.default_rng(3).normal(size=(6, 3, 24, 32)).astype(np.float32)
    parts = [x[:2], x[2:3], x[3:]]
    rng = collect_statistics(tiny_model, parts, CollectOptions(histograms=False))
    hist = collect_statistics(tiny_model, parts, CollectOptions(histograms=True))
    assert not rng.histograms and rng.statistic == "absmax" and hist.statistic == "histogram"
    assert all(type(t) is TensorRange for t in rng.tensors.values())
    assert all(isinstance(t, TensorHistogram) for t in hist.tensors.values())
    assert rng.absmax() == hist.absmax()
    assert {n: t.count for n, t in rng.tensors.items()} == {n: t.count for n, t in hist.tensors.items()}
    assert compute_ranges(rng, Method("max")) == compute_ranges(hist, Method("max"))
    with pytest.raises(UsageError, match="entropy method needs histograms"):
        compute_ranges(rng, Method("entropy"))


def test_workers_do_not_change_histograms(tiny_model):
    x = np.random.default_rng(4).normal(size=(4, 3, 64, 64)).astype(np.float32)
    one = collect_statistics(tiny_model, [x[:2], x[2:]], CollectOptions(workers=1))
    three = collect_statistics(tiny_model, [x[:2], x[2:]], CollectOptions(workers=3))
    for n, h in one.tensors.items():
        np.testing.assert_array_equal(h.hist, three.tensors[n].hist)
        assert h.range_max == three.tensors[n].range_max


def test_tensor_subset_of_a_multi_output_model(tmp_path):
    """Probing a subset keeps the requested order and computes what those tensors need."""
    model = make_model(tmp_path / "m.onnx")
    x = np.random.default_rng(5).normal(size=(2, 3, 16, 16)).astype(np.float32)
    s = collect_statistics(model, [x], CollectOptions(tensors=("relu1", "input"), histograms=False))
    assert list(s.tensors) == ["relu1", "input"]
    assert s.tensors["input"].absmax == float(np.abs(x).max())


def _copy_model(path):
    """input -> Relu 'a'; Neg 'b'; Concat(a, b) 'cat'; Reshape(cat) 'flat'; Concat(a, const) 'withconst'."""
    from onnx import numpy_helper

    shape = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
    const = numpy_helper.from_array(np.full((1, 3, 4, 4), 7.5, np.float32), "const")
    nodes = [helper.make_node("Relu", ["input"], ["a"]), helper.make_node("Neg", ["input"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["cat"], axis=1), helper.make_node("Reshape", ["cat", "shape"], ["flat"]),
             helper.make_node("Concat", ["a", "const"], ["withconst"], axis=0),
             helper.make_node("Add", ["flat", "flat"], ["out"])]
    g = helper.make_graph(nodes, "copies", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("withconst", TensorProto.FLOAT, None)],
                          initializer=[shape, const])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("histograms", [False, True])
def test_value_copies_are_derived_exactly(tmp_path, histograms):
    model = _copy_model(tmp_path / "copies.onnx")
    m = onnx.load(str(model))
    types = _float_activations(m)
    plan = add_probes(m, list(types), types, keep=histograms)
    assert plan.derived == {"cat": ("a", "b"), "flat": ("cat",)}  # 'withconst' has a constant source: probed
    assert "withconst" in plan.probed and "cat" not in plan.probed
    x = np.random.default_rng(6).normal(size=(1, 3, 4, 4)).astype(np.float32) * 3
    stats = collect_statistics(model, [x, x * 0.5], CollectOptions(histograms=histograms))
    assert list(stats.tensors) == list(types)
    both = np.concatenate([x.ravel(), (x * 0.5).ravel()])
    for name, values in {"cat": np.concatenate([np.maximum(both, 0), -both]), "flat": np.concatenate([np.maximum(both, 0), -both]),
                         "withconst": np.concatenate([np.maximum(both, 0), np.full(96, 7.5, np.float32)])}.items():
        ref = TensorHistogram() if histograms else TensorRange()
        ref.update(values)
        got = stats.tensors[name]
        assert (got.absmax, got.count) == (ref.absmax, ref.count), name
        if histograms:
            assert got.range_max == ref.range_max
            np.testing.assert_array_equal(got.hist, ref.hist)


def test_value_sources_rules():
    from segdeploy.calibration.probes import _value_sources

    def node(op, inputs, outputs=("y",), domain=""):
        return helper.make_node(op, list(inputs), list(outputs), domain=domain)

    assert _value_sources(node("Concat", ["a", "b", "c"]), "y") == ("a", "b", "c")
    assert _value_sources(node("Reshape", ["a", "shape"]), "y") == ("a",)
    assert _value_sources(node("Dropout", ["a", "ratio"], ("y", "mask")), "y") == ("a",)
    assert _value_sources(node("Dropout", ["a", "ratio", "training"], ("y", "mask")), "y") is None  # may drop values
    assert _value_sources(node("Dropout", ["a"], ("y", "mask")), "mask") is None
    assert _value_sources(node("Relu", ["a"]), "y") is None
    assert _value_sources(node("Concat", ["a", "b"], domain="com.example"), "y") is None
