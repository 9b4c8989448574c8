"""What ONNX Runtime's CPU provider actually executes for Q/DQ (INT8) and FP16 models -- read, not assumed.

``fp16_execution(path, opt_level)`` counts Cast nodes before and after optimisation;
``int8_execution(path, opt_level="all") -> dict`` creates a CPU session at that graph optimisation level with
``optimized_model_filepath`` set, reads the optimised graph back and counts its nodes:

* ``int8_kernels``: nodes that compute in integers (QLinearConv, QLinearMatMul, QLinearAdd, ..., ConvInteger,
  MatMulInteger, MatMulIntegerToFloat, QGemm, ...), by type;
* ``quantize_linear`` / ``dequantize_linear``: Q/DQ nodes left as stand-alone float ops;
* ``float_convs``: Conv / FusedConv / NCHWc Conv nodes that run in float.

ORT fuses ``DequantizeLinear -> op -> QuantizeLinear`` into a QLinear kernel; a Q/DQ placement that quantizes
only op *inputs* (TensorRT's convention, which segdeploy's placer follows) gives it no such pattern, and then
the "INT8" model runs float convolutions plus Q/DQ overhead. :func:`describe_int8_execution` turns the counts
into the one-paragraph note the bench prints, including what the row does and does not predict for TensorRT.

Raises ModelLoadError when ONNX Runtime cannot load the model. Writes only a temporary file (removed).
"""

from __future__ import annotations

import collections
import os
import tempfile
from typing import Any

from segdeploy.errors import ModelLoadError
from segdeploy.vocab import OrtLevel

INT8_OPS = ("ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "QGemm", "DynamicQuantizeMatMul",
            "QAttention", "QOrderedMatMul")
FLOAT_CONVS = ("Conv", "FusedConv", "NchwcConv")


def _is_int8_kernel(op: str) -> bool:
    return op.startswith("QLinear") or op in INT8_OPS


def optimized_ops(path: str | os.PathLike, opt_level: str = OrtLevel.ALL) -> collections.Counter:
    """Node counts by op type of the graph ONNX Runtime's CPU provider runs for ``path`` at ``opt_level``."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OrtLevel(opt_level).ort_name)
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="segdeploy-ortgraph-") as tmp:
        out = os.path.join(tmp, "optimized.onnx")
        so.optimized_model_filepath = out
        try:
            ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelLoadError(f"onnxruntime cannot load {path}: {first}; re-export it") from None
        graph = onnx.load(out, load_external_data=False).graph
        return collections.Counter(n.op_type for n in graph.node)


def int8_execution(path: str | os.PathLike, opt_level: str = OrtLevel.ALL) -> dict[str, Any]:
    """What ORT's CPU provider runs for the Q/DQ model ``path`` at ``opt_level`` (see module docstring)."""
    ops = optimized_ops(path, opt_level)
    return {
        "opt_level": opt_level,
        "int8_kernels": {op: n for op, n in sorted(ops.items()) if _is_int8_kernel(op)},
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "float_convs": sum(ops.get(op, 0) for op in FLOAT_CONVS),
    }


def fp16_execution(path: str | os.PathLike, opt_level: str = OrtLevel.ALL) -> dict[str, Any]:
    """Cast nodes in the FP16 model ``path`` before and after ORT's CPU optimisation at ``opt_level``."""
    import onnx

    before = sum(n.op_type == "Cast" for n in onnx.load(str(path), load_external_data=False).graph.node)
    ops = optimized_ops(path, opt_level)
    return {"opt_level": opt_level, "casts_in_file": int(before), "casts_after_optimisation": ops.get("Cast", 0),
            "nodes_after_optimisation": int(sum(ops.values()))}


def describe_fp16_execution(facts: dict[str, Any]) -> str:
    """The note printed under an ONNX Runtime CPU row of an FP16 model."""
    return (f"ONNX Runtime's CPU provider runs this FP16 model with {facts['casts_after_optimisation']} Cast nodes "
            f"after optimisation ({facts['casts_in_file']} in the file) at --ort-opt-level {facts['opt_level']}; "
            "its speed here depends on this processor's FP16 support in ONNX Runtime's kernels and does not predict "
            "GPU FP16 latency (tensor cores): a CUDA or TensorRT row measures that.")


TRT_CAVEAT = (
    "It does NOT predict TensorRT INT8 latency or speed-up: TensorRT fuses the Q/DQ pairs into its own int8 "
    "tactics and runs the unquantized rest in FP16 on tensor cores; only a TensorRT engine row measures that."
)


def describe_int8_execution(facts: dict[str, Any]) -> str:
    """The note printed under an ONNX Runtime CPU row of a Q/DQ model (plain words, from ``facts``)."""
    lvl = facts["opt_level"]
    q, dq = facts["quantize_linear"], facts["dequantize_linear"]
    kernels = facts["int8_kernels"]
    if lvl == OrtLevel.DISABLE:
        return ("ONNX Runtime at --ort-opt-level disable emulates Q/DQ in float (the faithful accuracy reference for "
                f"TensorRT): {dq} DequantizeLinear and {q} QuantizeLinear run as float ops, so this row is slower than "
                f"FP32 by construction and is not an int8 speed measurement. {TRT_CAVEAT}")
    if kernels:
        kinds = ", ".join(f"{n} {op}" for op, n in kernels.items())
        return (f"ONNX Runtime's CPU provider runs this Q/DQ model with int8 kernels ({kinds}) after fusing "
                f"DequantizeLinear -> op -> QuantizeLinear at --ort-opt-level {lvl}; {facts['float_convs']} "
                f"convolutions stay float and {dq} DequantizeLinear / {q} QuantizeLinear remain as float ops. The row "
                "measures CPU int8 kernels plus float glue: what a CPU deployment of this file costs. " + TRT_CAVEAT)
    return (f"ONNX Runtime's CPU provider found no int8 kernel for this Q/DQ model at --ort-opt-level {lvl} (0 QLinear "
            "nodes: its fusion needs DequantizeLinear -> op -> QuantizeLinear, and TensorRT-style placement quantizes "
            f"op inputs only), so {facts['float_convs']} convolutions run in float with {dq} DequantizeLinear and {q} "
            "QuantizeLinear around them: this row measures FP32 plus Q/DQ overhead, not int8 speed, and shows only "
            f"that the Q/DQ graph runs. {TRT_CAVEAT}")
