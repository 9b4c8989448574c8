"""Q/DQ placement and the TensorRT rule checker."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.precision.qdq import (
    QdqOptions,
    assert_trt_qdq,
    check_trt_qdq,
    quantizable_nodes,
    quantize_qdq,
)

from precision_helpers import export_onnx, ort_run


def _q(tiny, **kw):
    _, path, ranges, _ = tiny
    return quantize_qdq(onnx.load(path), ranges, QdqOptions(**kw))


def _node(model, op, index=0):
    return [n for n in model.graph.node if n.op_type == op][index]


def _init(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def test_placement_follows_rules(tiny):
    r = _q(tiny)
    m = r.model
    onnx.checker.check_model(m)
    assert check_trt_qdq(m) == []
    assert_trt_qdq(m)
    ops = {n.name: n.op_type for n in m.graph.node}
    quantized_ops = sorted(ops[n] for n in r.quantized)
    # c1..c4 convs, the residual Add (skip branch only) and the MaxPool; stem (3 in) and head (4 out) stay float
    assert quantized_ops == ["Add", "Conv", "Conv", "Conv", "Conv", "MaxPool"]
    reasons = {s.op_type + ":" + s.reason for s in r.skipped}
    assert any("3->16 channels < 16" in x for x in reasons) and any("16->4 channels < 16" in x for x in reasons)
    producers = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type in ("Resize", "Concat"):
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in n.input)
        if n.op_type == "Add" and n.name in r.quantized:
            from_dq = [producers[i].op_type == "DequantizeLinear" for i in n.input]
            assert sorted(from_dq) == [False, True]  # the conv-side input fuses; the skip branch has Q/DQ
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = numpy_helper.to_array(_init(m, n.input[2]))
            assert zp.dtype == np.int8 and not zp.any()
    # per-channel weights on axis 0, one scale per output channel; bias stays float
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and n.name in r.quantized)
    wdq = producers[conv.input[1]]
    assert wdq.op_type == "DequantizeLinear"
    assert next(a.i for a in wdq.attribute if a.name == "axis") == 0
    assert numpy_helper.to_array(_init(m, wdq.input[1])).shape == (16,)
    assert conv.input[2] in {t.name for t in m.graph.initializer}


def test_int8_runs_at_both_ort_levels_and_agrees(tiny):
    _, path, _, x = tiny
    m = _q(tiny).model
    ref = ort_run(path, x)
    for level in ("disable", "all"):
        y = ort_run(m, x, level)
        agree = float((y.argmax(1) == ref.argmax(1)).mean())
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        # measured on this model: agreement 0.99+, relative error ~1e-2 (8-bit steps through 4 int8 layers)
        assert agree >= 0.95, (level, agree)
        assert err < 0.1, (level, err)


def test_exclusion_and_min_channels(tiny):
    _, path, _, _ = tiny
    names = quantizable_nodes(onnx.load(path))
    victim = next(n for n in names if "c2" in n)
    r = _q(tiny, exclude=(victim,))
    assert victim not in r.quantized
    assert any(s.name == victim and s.reason == "excluded by name" for s in r.skipped)
    r0 = _q(tiny, min_channels=0)
    assert len(r0.quantized) == len(_q(tiny).quantized) + 2  # stem and head join when the rule is off
    assert check_trt_qdq(r0.model) == []


def test_missing_range_skips_layer(tiny):
    _, path, ranges, _ = tiny
    m = onnx.load(path)
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and "c3" in n.name)
    partial = {k: v for k, v in ranges.items() if k != conv.input[0]}
    r = quantize_qdq(m, partial)
    assert conv.name not in r.quantized
    assert any(s.name == conv.name and "no calibrated range" in s.reason for s in r.skipped)


def test_no_quantizable_layer_is_a_clear_error(tmp_path):
    import torch

    class NoConv(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(torch.relu(x) + 1.0, scale_factor=1.0)

    path = export_onnx(NoConv(), tmp_path / "noconv.onnx", size=16)
    with pytest.raises(UsageError, match="no quantizable layer"):
        quantize_qdq(onnx.load(path), {"input": 1.0})


def test_old_opset_refused(tiny):
    _, path, ranges, _ = tiny
    m = onnx.load(path)
    m.opset_import[0].version = 11
    with pytest.raises(ArtifactError, match="opset 11 is too old"):
        quantize_qdq(m, ranges)


# ---------------------------------------------------------------- the checker catches each violation kind


def _rules(m):
    return {v.rule for v in check_trt_qdq(m)}


def test_checker_catches_nonzero_zero_point(tiny):
    m = _q(tiny).model
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and "weight" not in n.input[0])
    _init(m, dq.input[2]).CopyFrom(numpy_helper.from_array(np.array(3, dtype=np.int8), dq.input[2]))
    assert "zero_point" in _rules(m)
    with pytest.raises(ArtifactError, match="zero_point"):
        assert_trt_qdq(m)


def test_checker_catches_missing_zero_point_uint8(tiny):
    m = _q(tiny).model
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    del q.input[2]
    assert "zero_point" in _rules(m)


def test_checker_catches_int32_bias(tiny):
    m = _q(tiny).model
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 2 and
                any(p.op_type == "DequantizeLinear" and p.output[0] == n.input[1] for p in m.graph.node))
    b = numpy_helper.to_array(_init(m, conv.input[2]))
    m.graph.initializer.extend([
        numpy_helper.from_array(np.round(b / 1e-4).astype(np.int32), "bias_i32"),
        numpy_helper.from_array(np.full(b.shape, 1e-4, dtype=np.float32), "bias_scale"),
        numpy_helper.from_array(np.zeros(b.shape, dtype=np.int32), "bias_zp"),
    ])
    m.graph.node.insert(0, helper.make_node("DequantizeLinear", ["bias_i32", "bias_scale", "bias_zp"], ["bias_dq"], axis=0))
    conv.input[2] = "bias_dq"
    assert "int32_bias" in _rules(m)


def test_checker_catches_per_tensor_weight(tiny):
    m = _q(tiny).model
    producers = {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and producers.get(n.input[1]) is not None)
    dq = producers[conv.input[1]]
    q = producers[dq.input[0]]
    s = numpy_helper.to_array(_init(m, dq.input[1]))
    for name, arr in ((dq.input[1], np.array(s.max(), dtype=np.float32)), (dq.input[2], np.array(0, dtype=np.int8))):
        _init(m, name).CopyFrom(numpy_helper.from_array(arr, name))
    for n in (q, dq):
        del n.attribute[:]
    assert "per_channel_weight" in _rules(m)


def test_checker_catches_qdq_on_resize(tiny):
    m = _q(tiny).model
    resize = _node(m, "Resize")
    t = resize.input[0]
    m.graph.initializer.extend([numpy_helper.from_array(np.array(0.1, dtype=np.float32), "rs_scale"),
                                numpy_helper.from_array(np.array(0, dtype=np.int8), "rs_zp")])
    idx = list(m.graph.node).index(resize)
    m.graph.node.insert(idx, helper.make_node("DequantizeLinear", ["rs_q", "rs_scale", "rs_zp"], ["rs_dq"]))
    m.graph.node.insert(idx, helper.make_node("QuantizeLinear", [t, "rs_scale", "rs_zp"], ["rs_q"]))
    resize.input[0] = "rs_dq"
    v = check_trt_qdq(m)
    assert [x.rule for x in v] == ["untouched_op"] and "Resize" in v[0].message


def test_checker_catches_unpaired_quantize(tiny):
    m = _q(tiny).model
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    consumers = [n for n in m.graph.node if q.output[0] in n.input]
    dq = consumers[0]
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            if x == dq.output[0]:
                n.input[i] = q.output[0]
    assert "pairing" in _rules(m)


def _pool_model(pool: str):
    """input -> Conv(16->16) -> pool -> Conv(16->16) -> logits (a real, small ONNX)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w2")
    kw = {"kernel_shape": [2, 2], "strides": [2, 2]} if pool in ("MaxPool", "AveragePool") else {}
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node(pool, ["c1"], ["p"], name="pool", **kw),
             helper.make_node("Conv", ["p", "w2"], ["logits"], pads=[1, 1, 1, 1], name="conv2")]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [vi("input", onnx.TensorProto.FLOAT, [1, 16, 8, 8])],
                              [vi("logits", onnx.TensorProto.FLOAT, None)], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dq_scale_of(m, tensor: str) -> float:
    """The scale of the DequantizeLinear that feeds ``tensor``'s quantized copy to its consumer."""
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == f"{tensor}_dequantized")
    return float(numpy_helper.to_array(_init(m, dq.input[1])))


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"])
def test_a_pool_output_shares_its_input_scale(pool):
    """TensorRT runs a quantized pool in int8 at its input's scale; the pool output's own (smaller) amax on the next
    Q/DQ would cost a requantize per pool. The output's Q/DQ uses the input's scale (no clipping: a max or mean of
    values within the input's range stays within it)."""
    amax = {"input": 3.0, "c1": 4.0, "p": 2.5}
    r = quantize_qdq(_pool_model(pool), amax, QdqOptions())
    assert {"pool", "conv2"} <= set(r.quantized) and check_trt_qdq(r.model) == []
    assert _dq_scale_of(r.model, "c1") == pytest.approx(4.0 / 127)
    assert _dq_scale_of(r.model, "p") == pytest.approx(4.0 / 127)  # the pool input's, not 2.5 / 127
    assert r.activation_scales["p"] == r.activation_scales["c1"]
    # a pool kept in float (by name) is not quantized at its input: its output keeps its own range
    r2 = quantize_qdq(_pool_model(pool), amax, QdqOptions(exclude=("pool",)))
    assert "pool" not in r2.quantized and _dq_scale_of(r2.model, "p") == pytest.approx(2.5 / 127)
