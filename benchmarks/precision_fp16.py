"""Compare FP16 converters on the same FP32 ONNX; print JSON.

Converters: segdeploy's own (segdeploy.precision.fp16, kept-FP32 from our calibrated absmax), ONNX's
onnxconverter-common (float16.convert_float_to_float16, keep_io_types=True) and NVIDIA ModelOpt AutoCast
(modelopt.onnx.autocast.convert_to_mixed_precision, keep_io_types=True, its own reference run on the
same inputs). The optional ones report "not installed" when missing. Metrics vs FP32 at ORT_DISABLE_ALL
and ORT_ENABLE_ALL: argmax agreement, max |logit| error, non-finite outputs; IO dtypes; how many float32
tensors are left inside; Cast nodes; wall time.

usage: python benchmarks/precision_fp16.py MODEL.onnx ABSMAX.json INPUTS.npy [--out DIR]
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

def ours(src, absmax, dst, x):
    from segdeploy.precision.fp16 import convert_fp16

    r = convert_fp16(onnx.load(src), absmax)
    onnx.save(r.model, dst)
    return len(r.kept)


def occ(src, absmax, dst, x):
    from onnxconverter_common import float16

    m = float16.convert_float_to_float16(onnx.load(src), keep_io_types=True)
    onnx.save(m, dst)
    return None


def autocast(src, absmax, dst, x):
    from modelopt.onnx.autocast import convert_to_mixed_precision

    npz = dst + ".calib.npz"
    np.savez(npz, input=x)
    with contextlib.redirect_stdout(sys.stderr):
        m = convert_to_mixed_precision(src, low_precision_type="fp16", keep_io_types=True, calibration_data=npz)
    onnx.save(m, dst)
    return None


def _types(m) -> dict:
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    del m2.graph.value_info[:]
    inf = onnx.shape_inference.infer_shapes(m2)
    return {v.name: v.type.tensor_type.elem_type for v in list(inf.graph.value_info) + list(inf.graph.output)}


def inner_float32(m) -> int:
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    del m2.graph.value_info[:]  # count what the graph computes, not stale annotations
    inf = onnx.shape_inference.infer_shapes(m2)
    io = {v.name for v in list(m.graph.input) + list(m.graph.output)}
    return sum(1 for v in inf.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and v.name not in io)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("absmax")
    ap.add_argument("inputs")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    absmax = json.load(open(a.absmax))
    x = np.load(a.inputs).astype(np.float32)
    out = a.out or tempfile.mkdtemp()
    os.makedirs(out, exist_ok=True)
    ref = run(a.model, x, LEVELS["enable_all"])
    results = {}
    with stdout_to_stderr():
        for name, fn in [("segdeploy", ours), ("onnxconverter_common", occ), ("modelopt_autocast", autocast)]:
            dst = os.path.join(out, f"{name}.fp16.onnx")
            row = {}
            try:
                t = time.perf_counter()
                kept = fn(a.model, absmax, dst, x)
                row["seconds"] = round(time.perf_counter() - t, 2)
            except ImportError as e:
                results[name] = {"error": f"not installed: {e}"}
                continue
            except Exception as e:  # a converter failing is a result to report
                results[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
                continue
            m = onnx.load(dst)
            row["io_dtypes"] = [onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in list(m.graph.input) + list(m.graph.output)]
            row["inner_float32_tensors"] = inner_float32(m)
            row["casts"] = sum(n.op_type == "Cast" for n in m.graph.node)
            types = _types(m)
            # tensors the FP32 calibration saw beyond 65504 that this graph computes in FP16: inf on TensorRT
            # (ONNX Runtime's CPU often runs such nodes in FP32 through its own Casts, so it cannot show it)
            row["fp16_tensors_over_range"] = sorted(t for t, v in absmax.items() if v > 65504 and types.get(t) == onnx.TensorProto.FLOAT16)
            if kept is not None:
                row["kept_fp32_nodes"] = kept
            for lvl, code in LEVELS.items():
                try:
                    y = run(dst, x, code)
                except Exception as e:  # noqa: BLE001
                    row[f"run_{lvl}"] = f"{type(e).__name__}: {e}"[:200]
                    continue
                row[f"argmax_agreement_{lvl}"] = round(float((y.argmax(1) == ref.argmax(1)).mean()), 5)
                row[f"max_abs_err_{lvl}"] = round(float(np.nanmax(np.abs(y - ref))), 5)
                row[f"nonfinite_{lvl}"] = int((~np.isfinite(y)).sum())
            results[name] = row
    print(json.dumps({"model": os.path.basename(a.model), "images": int(x.shape[0]), "converters": results}, indent=1))


if __name__ == "__main__":
    main()
