"""The INT8 placement's op sets are defined once (segdeploy.vocab): the Q/DQ placer and calibration's
``quantizable_inputs`` read the same sets, so the activations calibration calls quantizable are the ones the
placer puts Q/DQ on."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segdeploy import vocab


def _pool_model(pool: str) -> onnx.ModelProto:
    """input -> Conv(16->16) -> Relu -> <pool> -> output: every quantizable op kind but the residual Add."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node(pool, ["r"], ["out"], name="pool")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_the_sets_are_defined_once():
    from segdeploy import calibration
    from segdeploy.precision import qdq

    from segdeploy.calibration import collect

    assert calibration.QUANTIZABLE_OPS is vocab.QUANTIZABLE_OPS is collect.QUANTIZABLE_OPS
    assert set(vocab.QUANTIZABLE_OPS) == vocab.QDQ_WEIGHTED_OPS | vocab.QDQ_POOL_OPS | {vocab.QDQ_RESIDUAL_OP}
    assert not set(vocab.QUANTIZABLE_OPS) & vocab.QDQ_UNTOUCHED_OPS
    src = open(qdq.__file__).read()
    assert "frozenset(" not in src and '"GlobalMaxPool"' not in src  # the placer spells no op set of its own


@pytest.mark.parametrize("pool", sorted(vocab.QDQ_POOL_OPS))
def test_the_placer_quantizes_every_pool_of_the_set(pool):
    from segdeploy.precision.qdq import quantizable_nodes

    assert quantizable_nodes(_pool_model(pool)) == ["conv", "pool"]


def test_calibration_quantizable_inputs_follow_the_placer():
    from segdeploy.calibration.collect import quantizable_inputs

    model = _pool_model("GlobalMaxPool")
    assert quantizable_inputs(model) == ["input", "r"]  # the Conv's input and the pool's input, as the placer
