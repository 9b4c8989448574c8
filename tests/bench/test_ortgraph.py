"""segdeploy.bench.ortgraph: what ONNX Runtime's CPU provider really runs for Q/DQ models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segdeploy.bench.ortgraph import describe_int8_execution, int8_execution


def _qdq_conv(path, output_q: bool):
    """x -> Q -> DQ -> Conv(DQ(int8 weight)) [-> Q -> DQ] -> y: ORT's canonical pattern when output_q."""
    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, (16, 16, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s_x"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.full(16, 0.01, np.float32), "s_w"),
        numpy_helper.from_array(np.zeros(16, np.int8), "z_w"),
        numpy_helper.from_array(np.array(0.1, np.float32), "s_y"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "z"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s_x", "z"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w_dq"], axis=0),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["c" if output_q else "y"], pads=[1, 1, 1, 1]),
    ]
    if output_q:
        nodes += [helper.make_node("QuantizeLinear", ["c", "s_y", "z"], ["c_q"]),
                  helper.make_node("DequantizeLinear", ["c_q", "s_y", "z"], ["y"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])], initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_output_quantized_conv_becomes_a_qlinear_kernel(tmp_path):
    facts = int8_execution(_qdq_conv(tmp_path / "q.onnx", output_q=True), "all")
    assert facts["int8_kernels"] == {"QLinearConv": 1}
    assert facts["float_convs"] == 0
    note = describe_int8_execution(facts)
    assert "runs this Q/DQ model with int8 kernels (1 QLinearConv)" in note
    assert "does NOT predict TensorRT INT8 latency" in note


def test_input_only_qdq_stays_float(tmp_path):
    """TensorRT-style placement (Q/DQ on op inputs only): ORT has no int8 kernel to fuse into."""
    facts = int8_execution(_qdq_conv(tmp_path / "in.onnx", output_q=False), "all")
    assert facts["int8_kernels"] == {}
    assert facts["float_convs"] == 1 and facts["dequantize_linear"] >= 1
    note = describe_int8_execution(facts)
    assert "found no int8 kernel" in note and "not int8 speed" in note and "does NOT predict TensorRT" in note


def test_disable_level_is_float_emulation(tmp_path):
    facts = int8_execution(_qdq_conv(tmp_path / "q.onnx", output_q=True), "disable")
    assert facts["int8_kernels"] == {} and facts["quantize_linear"] == 2
    assert "emulates Q/DQ in float" in describe_int8_execution(facts)


def test_segdeploy_int8_export_is_inspected_in_the_report(int8_export):
    from segdeploy.bench.run import BenchOptions, run_bench

    doc = run_bench([int8_export], BenchOptions(runners=("ort-cpu",), warmup=1, iters=1))
    fp32, int8 = doc["targets"]
    assert fp32["execution"] is None
    facts = int8["execution"]["ort_cpu_int8"]
    assert facts == int8_execution(int8_export / "model.int8.onnx", "all")
    assert int8["notes"] == [describe_int8_execution(facts)]


def test_unloadable_model_is_one_line(tmp_path):
    from segdeploy.errors import ModelLoadError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        int8_execution(bad)


def test_fp16_casts_are_counted(tmp_path):
    from segdeploy.bench.ortgraph import describe_fp16_execution, fp16_execution

    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "h", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    p = tmp_path / "h.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(p))
    facts = fp16_execution(p, "all")
    assert facts["casts_in_file"] == 2 and facts["opt_level"] == "all"
    assert facts["casts_after_optimisation"] >= 0 and facts["nodes_after_optimisation"] >= 1
    note = describe_fp16_execution(facts)
    assert f"{facts['casts_after_optimisation']} Cast nodes after optimisation (2 in the file)" in note
    assert "does not predict GPU FP16 latency" in note
