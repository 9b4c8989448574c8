"""Fixtures for the TensorRT layer tests: small real ONNX files, plan headers, calibration caches.

Every ONNX here is a valid ONNX model built with onnx.helper (the stand-in's parser reads the real file);
plan headers are handcrafted per the documented layout (magic ``ftrt``, version bytes 24..27).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, inits=(), domains=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    ops = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(g, opset_imports=ops)


def _io(name: str, k: int, dims=("batch", None, "height", "width")):
    shape = [d if d is not None else k for d in dims]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt_onnx")
    w = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, np.float32), "w")
    # plain: Conv -> logits, dynamic batch/height/width
    onnx.save(_model([helper.make_node("Conv", ["input", "w"], ["logits"], pads=[1, 1, 1, 1], name="conv0")],
                     [_io("input", 3)], [_io("logits", 4)], [w]), d / "model.onnx")
    # SegNet-like standard graph: MaxPool with Indices + MaxUnpool (TensorRT's parser rejects both)
    onnx.save(_model([
        helper.make_node("MaxPool", ["input"], ["p", "idx"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("MaxUnpool", ["p", "idx"], ["u"], kernel_shape=[2, 2], strides=[2, 2], name="unpool1"),
        helper.make_node("Conv", ["u", "w"], ["logits"], pads=[1, 1, 1, 1], name="conv0"),
    ], [_io("input", 3)], [_io("logits", 4)], [w]), d / "unpool.onnx")
    # the same model mapped to segdeploy's plugin nodes (as segdeploy.plugins.onnx_mapping writes them)
    plug = dict(domain="segdeploy", plugin_version="1", plugin_namespace="segdeploy")
    onnx.save(_model([
        helper.make_node("SegdeployMaxPoolWithIndices", ["input"], ["p", "idx"], name="pool1_plugin",
                         kernel_size=[2, 2], stride=[2, 2], **plug),
        helper.make_node("SegdeployMaxUnpool", ["p", "idx"], ["u"], name="unpool1_plugin", kernel_size=[2, 2],
                         stride=[2, 2], **plug),
        helper.make_node("Conv", ["u", "w"], ["logits"], pads=[1, 1, 1, 1], name="conv0"),
    ], [_io("input", 3)], [_io("logits", 4)], [w], domains=("segdeploy",)), d / "model.trt.onnx")
    # static 64x64 H/W
    onnx.save(_model([helper.make_node("Conv", ["input", "w"], ["logits"], pads=[1, 1, 1, 1], name="conv0")],
                     [_io("input", 3, ("batch", None, 64, 64))], [_io("logits", 4, ("batch", None, 64, 64))], [w]),
              d / "static.onnx")
    return d


@pytest.fixture()
def plugin_lib(tmp_path):
    """A path for the plugin library. The stand-in never dlopens it: it only checks that the file exists."""
    p = tmp_path / "libsegdeploy_trt_plugins.so"
    p.write_bytes(b"\x7fELF placeholder: the stand-in registry records the path, it never loads it")
    return p


@pytest.fixture()
def write_cache(tmp_path):
    """write_cache(version) -> path of a TensorRT calibration cache for the plain model's tensors."""
    from segdeploy.trt.calib_cache import write_trt_cache

    def make(version: str, name: str = "model.calib.cache"):
        p = tmp_path / name
        write_trt_cache(p, {"input": 2.5, "logits": 7.0}, version)
        return p

    return make
