"""Graph clean-up after export: onnxslim vs ONNX Runtime's basic offline optimisation vs none.

For each model: node count, file size, whether the cleaned graph still verifies (4 shapes), ORT CPU
latency of the cleaned graph at the opt shape (median of 10), and the clean-up's own time. JSON out.

    python benchmarks/cleanup.py [--rows smp.Unet,smp.PSPNet,...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="smp.Unet,smp.PSPNet,smp.DeepLabV3Plus,smp.Segformer,tv.lraspp_mobilenet_v3_large")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    import onnxruntime as ort

    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model
    from segdeploy.export.matrix import BY_NAME

    rows = []
    for name in args.rows.split(","):
        row = BY_NAME[name]
        model = row.build()
        entry = {"model": name}
        for tool in ("none", "onnxslim", "ort-basic"):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                res = export_model(model, d, ExportOptions(shape=row.shape, max_batch=2, cleanup=tool, exporter="torchscript"))
                total = time.perf_counter() - t0
                m = onnx.load(str(res.onnx_path))
                so = ort.SessionOptions()
                so.intra_op_num_threads = 2
                sess = ort.InferenceSession(str(res.onnx_path), so, providers=["CPUExecutionProvider"])
                x = np.random.default_rng(0).standard_normal(res.profile.opt).astype(np.float32)
                sess.run(None, {"input": x})
                lat = []
                for _ in range(10):
                    t = time.perf_counter()
                    sess.run(None, {"input": x})
                    lat.append(time.perf_counter() - t)
                entry[tool] = {
                    "nodes": len(m.graph.node),
                    "bytes": Path(res.onnx_path).stat().st_size,
                    "verified": res.verification.passed,
                    "export_verify_seconds": round(total, 2),
                    "ort_latency_ms_median": round(1000 * statistics.median(lat), 2),
                }
        rows.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    doc = {"benchmark": "cleanup", "rows": rows}
    print(json.dumps(doc, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
