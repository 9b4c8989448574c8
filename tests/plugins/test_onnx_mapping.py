"""segdeploy.plugins.onnx_mapping: standard ONNX -> plugin nodes, checked on the CPU.

The plugin-node graph is evaluated with onnx.reference (plugin ops backed by segdeploy.plugins.reference)
and compared with ONNX Runtime on the standard graph and with PyTorch, at more than one input shape.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper

from segdeploy.plugins.onnx_mapping import (
    MAXPOOL_PLUGIN,
    MAXUNPOOL_PLUGIN,
    PLUGIN_DOMAIN,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    ROIALIGN_PLUGIN,
    PluginMappingError,
    make_reference_evaluator,
    to_plugin_graph,
)

ort = pytest.importorskip("onnxruntime")
torchvision = pytest.importorskip("torchvision")


def _export(module: nn.Module, args: tuple, path, dynamo: bool, **kw) -> onnx.ModelProto:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), dynamo=dynamo, **kw)
    return onnx.load(str(path))


class SegNetBlock(nn.Module):
    """Two encoder/decoder stages: a plain 2x2 pool and a 3x3/s2/p1 ceil-mode pool, unpooled to the input size."""

    def __init__(self):
        super().__init__()
        self.enc1, self.enc2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1)
        self.dec2, self.dec1 = nn.Conv2d(5, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        a = self.enc1(x)
        p1, i1 = F.max_pool2d(a, 2, 2, return_indices=True)
        b = self.enc2(p1)
        p2, i2 = F.max_pool2d(b, 3, 2, padding=1, ceil_mode=True, return_indices=True)
        u2 = F.max_unpool2d(p2, i2, 3, 2, padding=1, output_size=b.shape[-2:])
        u1 = F.max_unpool2d(self.dec2(u2), i1, 2, 2, output_size=a.shape[-2:])
        return self.dec1(u1)


DYN = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}


@pytest.fixture(scope="module")
def segnet(tmp_path_factory):
    torch.manual_seed(0)
    model = SegNetBlock().eval()
    onnx_model = _export(model, (torch.randn(1, 3, 16, 16),), tmp_path_factory.mktemp("seg") / "segnet.onnx",
                         dynamo=True, input_names=["input"], output_names=["logits"], dynamic_axes=DYN)
    return model, onnx_model


@pytest.mark.slow
def test_segnet_plugin_graph_matches_standard_graph_and_torch(segnet):
    model, standard = segnet
    plugin, mapped = to_plugin_graph(standard)
    kinds = sorted(m.kind for m in mapped)
    assert kinds == ["max_pool_with_indices"] * 2 + ["max_unpool"] * 2
    ops = [n.op_type for n in plugin.graph.node]
    assert "ScatterND" not in ops and "MaxPool" not in ops
    assert ops.count(MAXPOOL_PLUGIN) == 2 and ops.count(MAXUNPOOL_PLUGIN) == 2
    # the standard graph is untouched (it is the one ONNX Runtime verifies)
    assert "ScatterND" in [n.op_type for n in standard.graph.node]
    sess = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"])
    evaluator = make_reference_evaluator(plugin)
    for shape in [(1, 3, 16, 16), (2, 3, 19, 13)]:  # another batch and odd sizes (ceil_mode kicks in)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        std = sess.run(None, {"input": x})[0]
        got = evaluator.run(None, {"input": x})[0]
        assert got.shape == want.shape == std.shape
        np.testing.assert_allclose(std, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got, std, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_segnet_plugin_attributes(segnet):
    _, standard = segnet
    plugin, mapped = to_plugin_graph(standard)
    assert any(i.domain == PLUGIN_DOMAIN for i in plugin.opset_import)
    pools = [n for n in plugin.graph.node if n.op_type == MAXPOOL_PLUGIN]
    attrs = sorted(({a.name: helper.get_attribute_value(a) for a in n.attribute} for n in pools), key=lambda a: a["kernel_size"])
    assert attrs[0]["kernel_size"] == [2, 2] and attrs[0]["ceil_mode"] == 0 and attrs[0]["padding"] == [0, 0]
    assert attrs[1]["kernel_size"] == [3, 3] and attrs[1]["ceil_mode"] == 1 and attrs[1]["padding"] == [1, 1]
    assert attrs[1]["stride"] == [2, 2] and attrs[1]["dilation"] == [1, 1]
    for n in plugin.graph.node:
        if n.domain != PLUGIN_DOMAIN:
            continue
        a = {x.name: x for x in n.attribute}
        assert helper.get_attribute_value(a["plugin_version"]) == PLUGIN_VERSION.encode()
        assert helper.get_attribute_value(a["plugin_namespace"]) == PLUGIN_NAMESPACE.encode()
        for x in a.values():  # everything survives TensorRT's int64 -> int32 narrowing
            if x.type == onnx.AttributeProto.INT:
                assert abs(x.i) < 2**31
            if x.type == onnx.AttributeProto.INTS:
                assert all(abs(v) < 2**31 for v in x.ints)
        if n.op_type == MAXUNPOOL_PLUGIN:
            assert list(a["tensorrt_plugin_shape_input_indices"].ints) == [2] and len(n.input) == 3
    assert {m.plugin for m in mapped} == {MAXPOOL_PLUGIN, MAXUNPOOL_PLUGIN}


class PoolOnly(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, (2, 3), (2, 1), padding=(1, 1), dilation=(2, 1), return_indices=True)


@pytest.mark.parametrize("dynamo", [False, True])
def test_pool_indices_as_graph_output_are_cast_back(tmp_path, dynamo):
    standard = _export(PoolOnly(), (torch.randn(1, 3, 12, 10),), tmp_path / "p.onnx", dynamo=dynamo,
                       input_names=["input"], output_names=["values", "indices"],
                       dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}})
    plugin, mapped = to_plugin_graph(standard)
    assert [m.kind for m in mapped] == ["max_pool_with_indices"]
    assert mapped[0].attributes == {"kernel_size": [2, 3], "stride": [2, 1], "padding": [1, 1], "dilation": [2, 1], "ceil_mode": 0}
    assert [n.op_type for n in plugin.graph.node] == [MAXPOOL_PLUGIN, "Cast"]
    x = np.random.default_rng(2).standard_normal((2, 3, 15, 11)).astype(np.float32)
    want_v, want_i = F.max_pool2d(torch.from_numpy(x), (2, 3), (2, 1), (1, 1), (2, 1), return_indices=True)
    got_v, got_i = make_reference_evaluator(plugin).run(None, {"input": x})
    std_v, std_i = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert got_i.dtype == np.int64
    np.testing.assert_array_equal(got_i, want_i.numpy())
    np.testing.assert_array_equal(std_i, want_i.numpy())
    np.testing.assert_array_equal(got_v, std_v)


class Roi(nn.Module):
    def __init__(self, output, scale, sr, aligned):
        super().__init__()
        self.args = (output, scale, sr, aligned)

    def forward(self, x, boxes):
        output, scale, sr, aligned = self.args
        return torchvision.ops.roi_align(x, boxes, output, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)


ROI_CASES = [
    (False, (7, 7), 0.5, 0, True),
    (False, (7, 7), 0.25, 2, False),
    (False, (3, 5), 1.0, -1, True),
    pytest.param(True, (7, 7), 0.5, 0, True, marks=pytest.mark.slow),
    pytest.param(True, (2, 4), 1.0, 2, False, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("dynamo,output,scale,sr,aligned", ROI_CASES)
def test_roi_align_plugin_matches_onnxruntime_and_torchvision(tmp_path, dynamo, output, scale, sr, aligned):
    module = Roi(output, scale, sr, aligned)
    x0 = torch.randn(2, 4, 16, 20)
    b0 = torch.tensor([[0, 1.0, 1.0, 20.0, 24.0], [1, 4.0, 2.0, 9.0, 30.0]])
    standard = _export(module, (x0, b0), tmp_path / "roi.onnx", dynamo=dynamo, input_names=["x", "boxes"],
                       output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "boxes": {0: "k"}, "y": {0: "k"}})
    plugin, mapped = to_plugin_graph(standard)
    assert [m.kind for m in mapped] == ["roi_align"]
    node = next(n for n in plugin.graph.node if n.op_type == ROIALIGN_PLUGIN)
    attrs = {a.name: a for a in node.attribute}
    # sampling_ratio is always written (TensorRT's built-in importer would default it to 1)
    assert attrs["sampling_ratio"].type == onnx.AttributeProto.INT and attrs["sampling_ratio"].i == max(sr, 0)
    assert attrs["aligned"].i == int(aligned)
    assert attrs["spatial_scale"].type == onnx.AttributeProto.FLOAT and attrs["spatial_scale"].f == pytest.approx(scale)
    assert (attrs["output_height"].i, attrs["output_width"].i) == output
    assert "RoiAlign" not in [n.op_type for n in plugin.graph.node]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 13, 17)).astype(np.float32)
    size = 17 / scale
    xy = rng.uniform(-0.1 * size, size, (6, 2))
    wh = rng.uniform(0, 0.6 * size, (6, 2))
    boxes = np.concatenate([rng.integers(0, 3, (6, 1)), xy, xy + wh], axis=1).astype(np.float32)
    boxes[0, 1:] = [3.0, 3.0, 3.0, 3.0]  # degenerate box
    want = module(torch.from_numpy(x), torch.from_numpy(boxes)).numpy()
    std = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x, "boxes": boxes})[0]
    got = make_reference_evaluator(plugin).run(None, {"x": x, "boxes": boxes})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, std, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ hand-built graphs
def _model(nodes, inputs, outputs, inits=(), opset=20):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _roi_model(opset, **attrs):
    vi = helper.make_tensor_value_info
    node = helper.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], name="roi", **attrs)
    return _model([node], [vi("x", TensorProto.FLOAT, [1, 2, 8, 8]), vi("rois", TensorProto.FLOAT, ["k", 4]),
                           vi("bi", TensorProto.INT64, ["k"])], [vi("y", TensorProto.FLOAT, ["k", 2, 2, 2])], opset=opset)


@pytest.mark.parametrize("opset,aligned", [(16, 1), (10, 0)])
def test_roi_align_opset_default_coordinate_mode(opset, aligned):
    plugin, mapped = to_plugin_graph(_roi_model(opset, output_height=2, output_width=2))
    assert mapped[0].attributes["aligned"] == aligned  # opset 16 default half_pixel, opset 10 output_half_pixel
    assert mapped[0].attributes["sampling_ratio"] == 0


def test_roi_align_max_mode_is_refused():
    model = _roi_model(16, mode="max")
    with pytest.raises(PluginMappingError) as err:
        to_plugin_graph(model)
    assert "mode=max" in str(err.value) and "\n" not in str(err.value)
    assert model.graph.node[0].op_type == "RoiAlign"  # input untouched


def _pool_model(**attrs):
    vi = helper.make_tensor_value_info
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], name="pool", kernel_shape=[2, 2], **attrs)
    relu = helper.make_node("Cast", ["i"], ["f"], name="use", to=TensorProto.FLOAT)
    return _model([node, relu], [vi("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                  [vi("y", TensorProto.FLOAT, [1, 2, 4, 4]), vi("f", TensorProto.FLOAT, [1, 2, 4, 4])])


@pytest.mark.parametrize("attrs,needle", [
    ({"pads": [0, 0, 1, 1]}, "asymmetric pads"),
    ({"storage_order": 1}, "storage_order"),
    ({"auto_pad": "SAME_UPPER"}, "auto_pad"),
    ({}, "expected PyTorch's per-plane conversion"),
])
def test_unmappable_max_pool_is_refused(attrs, needle):
    with pytest.raises(PluginMappingError) as err:
        to_plugin_graph(_pool_model(**attrs))
    assert needle in str(err.value) and "'pool'" in str(err.value) and "\n" not in str(err.value)


def test_graph_without_patterns_is_returned_unchanged():
    vi = helper.make_tensor_value_info
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])])
    out, mapped = to_plugin_graph(model)
    assert mapped == [] and out.SerializeToString() == model.SerializeToString()
