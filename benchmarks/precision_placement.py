"""Compare INT8 Q/DQ placers on the same FP32 ONNX and the same calibrated ranges; print JSON.

Placers: segdeploy's own (segdeploy.precision.qdq), ONNX Runtime's QDQQuantizer with TensorRT settings
(its calibration replaced by our ranges through TensorsData), and NVIDIA ModelOpt
(modelopt.onnx.quantization.quantize fed with our ranges as a TensorRT calibration cache). ModelOpt is
optional: without it, its row says so. Metrics: argmax agreement and max |logit| error vs FP32 at
ORT_DISABLE_ALL (faithful Q/DQ emulation) and ORT_ENABLE_ALL, TensorRT-rule violations
(segdeploy.precision.qdq.check_trt_qdq), number of Q/DQ nodes, wall time.

usage: python benchmarks/precision_placement.py MODEL.onnx RANGES.json INPUTS.npy [--out DIR]
  RANGES.json: {tensor: amax}; INPUTS.npy: float32 NCHW evaluation batch (disjoint from calibration).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
from _precision_common import LEVELS, run, stdout_to_stderr

from segdeploy.trt.calib_cache import write_trt_cache
from segdeploy.precision.qdq import QdqOptions, check_trt_qdq, quantize_qdq, summarize_violations

def ours(src, amax, dst):
    r = quantize_qdq(onnx.load(src), amax, QdqOptions())
    onnx.save(r.model, dst)


def ort_qdq(src, amax, dst):
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    model = onnx.load(src)
    tr = TensorsData(CalibrationMethod.MinMax, {k: TensorData(lowest=np.float32(-v), highest=np.float32(v)) for k, v in amax.items()})
    from onnxruntime.quantization.registry import QDQRegistry

    q = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QInt8, tr, [], [], list(QDQRegistry.keys()),
                     {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                      "AddQDQPairToWeight": True, "DedicatedQDQPair": True})
    q.quantize_model()
    q.model.save_model_to_file(dst)


def modelopt(src, amax, dst, x):
    from modelopt.onnx.quantization import quantize

    cache = dst + ".cache"
    write_trt_cache(cache, amax, "8.6.1")  # header TRT-8601-EntropyCalibration2
    with contextlib.redirect_stdout(sys.stderr):  # ModelOpt prints progress on stdout; keep stdout JSON
        quantize(src, quantize_mode="int8", calibration_data={"input": x[:1]}, calibration_cache_path=cache,
                 calibration_eps=["cpu"], output_path=dst, high_precision_dtype="fp32", log_level="ERROR")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("ranges")
    ap.add_argument("inputs")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    amax = json.load(open(a.ranges))
    x = np.load(a.inputs).astype(np.float32)
    out = a.out or tempfile.mkdtemp()
    os.makedirs(out, exist_ok=True)
    ref = run(a.model, x, LEVELS["enable_all"])
    results = {}
    with stdout_to_stderr():
        for name, fn in [("segdeploy", lambda d: ours(a.model, amax, d)), ("onnxruntime", lambda d: ort_qdq(a.model, amax, d)),
                         ("modelopt", lambda d: modelopt(a.model, amax, d, x))]:
            dst = os.path.join(out, f"{name}.int8.onnx")
            row = {}
            try:
                t = time.perf_counter()
                fn(dst)
                row["seconds"] = round(time.perf_counter() - t, 2)
            except ImportError as e:
                results[name] = {"error": f"not installed: {e}"}
                continue
            except Exception as e:  # a placer failing is a result to report
                results[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
                continue
            m = onnx.load(dst)
            ops = [n.op_type for n in m.graph.node]
            row["q_nodes"] = ops.count("QuantizeLinear")
            row["dq_nodes"] = ops.count("DequantizeLinear")
            row["violations"] = summarize_violations(check_trt_qdq(m))
            for lvl, code in LEVELS.items():
                y = run(dst, x, code)
                row[f"argmax_agreement_{lvl}"] = round(float((y.argmax(1) == ref.argmax(1)).mean()), 5)
                row[f"max_abs_err_{lvl}"] = round(float(np.abs(y - ref).max()), 5)
            results[name] = row
    print(json.dumps({"model": os.path.basename(a.model), "images": int(x.shape[0]), "placers": results}, indent=1))


if __name__ == "__main__":
    main()
