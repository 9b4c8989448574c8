"""Strongly-typed FP16 conversion."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from segdeploy.errors import UsageError
from segdeploy.precision.fp16 import Fp16Options, convert_fp16
from segdeploy.precision.qdq import quantize_qdq

from precision_helpers import export_onnx, ort_run


def _inferred_types(m):
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    del m2.graph.value_info[:]
    inf = onnx.shape_inference.infer_shapes(m2, strict_mode=True)
    return {v.name: v.type.tensor_type.elem_type for v in inf.graph.value_info}


def _node_reads(m, name, dtype):
    """True when every float input of node ``name`` has ``dtype`` in the converted graph."""
    types = _inferred_types(m)
    types.update({i.name: i.data_type for i in m.graph.initializer})
    node = next(n for n in m.graph.node if n.name == name)
    return all(types.get(i) == dtype for i in node.input if types.get(i) in (TensorProto.FLOAT, TensorProto.FLOAT16))


def test_fp16_io_float32_inside_float16_and_runs(tiny):
    _, path, ranges, x = tiny
    r = convert_fp16(onnx.load(path), ranges)
    m = r.model
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in m.graph.output] == [TensorProto.FLOAT]
    types = _inferred_types(m)
    f32 = [k for k, v in types.items() if v == TensorProto.FLOAT]
    f16 = [k for k, v in types.items() if v == TensorProto.FLOAT16]
    # only Resize's scales input (float32 by the ONNX spec) stays float32 inside
    resize = next(n for n in m.graph.node if n.op_type == "Resize")
    assert set(f32) <= {resize.input[2]}, f32
    assert len(f16) > 10
    assert all(t.data_type != TensorProto.FLOAT or t.name == resize.input[2] for t in m.graph.initializer
               if any(t.name in n.input for n in m.graph.node if n.op_type != "Resize"))
    ref = ort_run(path, x)
    for level in ("disable", "all"):
        y = ort_run(m, x, level)
        assert y.dtype == np.float32
        # measured: max relative error ~1e-3, argmax agreement > 0.99
        assert float(np.abs(y - ref).max() / np.abs(ref).max()) < 1e-2
        assert float((y.argmax(1) == ref.argmax(1)).mean()) > 0.98


def test_kept_fp32_by_name_and_op_type(tiny):
    _, path, ranges, x = tiny
    m0 = onnx.load(path)
    from segdeploy.precision.qdq import _name_nodes

    _name_nodes(m0.graph)
    conv = next(n.name for n in m0.graph.node if n.op_type == "Conv" and "c2" in n.name)
    r = convert_fp16(m0, ranges, Fp16Options(keep_nodes=(conv,), keep_op_types=("Concat",)))
    kept = {k.name: k.reason for k in r.kept}
    concat = next(n.name for n in m0.graph.node if n.op_type == "Concat")
    assert kept[conv] == "kept by name" and "Concat" in kept[concat]
    assert _node_reads(r.model, conv, TensorProto.FLOAT)
    assert _node_reads(r.model, concat, TensorProto.FLOAT)
    other = next(n.name for n in m0.graph.node if n.op_type == "Conv" and "c3" in n.name)
    assert _node_reads(r.model, other, TensorProto.FLOAT16)
    y = ort_run(r.model, x)
    assert np.isfinite(y).all()


class Overflow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = torch.relu(self.c1(x)) * 1e5  # far beyond FP16's 65504
        return self.c2(y / 1e5)


def test_overflow_ranges_keep_ops_fp32(tmp_path):
    torch.manual_seed(0)
    path = export_onnx(Overflow(), tmp_path / "ovf.onnx", size=16)
    from precision_helpers import max_ranges

    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    absmax = max_ranges(path, [x])
    r = convert_fp16(onnx.load(path), absmax)
    kept_ops = sorted(k.op_type for k in r.kept)
    assert kept_ops == ["Div", "Mul"], r.kept_report()
    assert all("FP16 overflow" in k.reason for k in r.kept)
    y, ref = ort_run(r.model, x), ort_run(path, x)
    assert np.isfinite(y).all() and np.abs(y - ref).max() < 1e-2 * np.abs(ref).max()
    # without ranges, the 1e5 constants alone still keep Mul and Div in FP32 (no constant becomes inf)
    r2 = convert_fp16(onnx.load(path))
    assert sorted(k.op_type for k in r2.kept) == ["Div", "Mul"]
    assert np.isfinite(ort_run(r2.model, x)).all()


def test_qdq_input_refused(tiny):
    _, path, ranges, _ = tiny
    q = quantize_qdq(onnx.load(path), ranges).model
    with pytest.raises(UsageError, match="already has Q/DQ"):
        convert_fp16(q, ranges)


def test_custom_plugin_op_kept_fp32_with_casts():
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((4, 3, 1, 1)).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["r"]),
         helper.make_node("MyPlugin", ["r"], ["p"], domain="segdeploy", name="plug"),
         helper.make_node("Conv", ["p", "w"], ["logits"])],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("segdeploy", 1)])
    r = convert_fp16(m)
    assert [(k.name, "plugin" in k.reason) for k in r.kept] == [("plug", True)]
    nodes = {n.name or n.output[0]: n for n in r.model.graph.node}
    plug = nodes["plug"]
    producers = {o: n for n in r.model.graph.node for o in n.output}
    assert producers[plug.input[0]].op_type == "Cast"  # fp16 -> fp32 in front of the plugin
    conv = next(n for n in r.model.graph.node if n.op_type == "Conv")
    assert producers[conv.input[0]].op_type == "Cast"  # and back to fp16 behind it


def test_constant_of_shape_without_value_becomes_float16():
    """ConstantOfShape with no ``value`` makes float32 zeros (ONNX's default): dynamo's MaxUnpool writes its
    ScatterND into such zeros, and the FP16 graph did not type-check (SegNet --fp16 failed)."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Shape", ["input"], ["shp"]),
        helper.make_node("ConstantOfShape", ["shp"], ["zeros"]),  # no value attribute
        helper.make_node("Relu", ["input"], ["upd"]),
        helper.make_node("ScatterND", ["zeros", "idx", "upd"], ["logits"]),
    ]
    idx = numpy_helper.from_array(np.array([[0], [1]], dtype=np.int64), "idx")
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 3])], [idx])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    out = convert_fp16(model).model
    x = np.array([[1, -2, 3], [-4, 5, -6]], dtype=np.float32)
    got = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.dtype == np.float32 and np.array_equal(got, np.maximum(x, 0))
