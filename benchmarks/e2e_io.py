"""End-to-end variant vs plain model on ONNX Runtime (CPU): bytes copied in/out per frame and latency, side by side.

    python benchmarks/e2e_io.py EXPORT_DIR [--frame 128x128] [--batch 1] [--repeats 30] [--threads 1]

EXPORT_DIR holds model[.<prec>].onnx and the end-to-end variants (``segdeploy export ... --end-to-end``, or the
e2e stage run on it). For each precision with both files, the same seeded uint8 RGB frames go

* plain: host preprocessing (:func:`segdeploy.datasets.preprocess.to_batch`: float32 NCHW, padded) -> session.run ->
  host crop + argmax over the K score planes -> class map;
* end-to-end: session.run on the uint8 NHWC frames -> class map (preprocessing, pad, crop, argmax in the graph).

The measurement is :func:`segdeploy.bench.e2e.measure_pair` (``segdeploy bench`` shows the same rows). Both class maps
are compared (they must be equal). Prints JSON: per precision the median milliseconds of each
part, the totals and their ratio, and the bytes each path moves across the model boundary per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segdeploy.bench.e2e import (
    measure_pair,  # the measurement `segdeploy bench` shows too
)
from segdeploy.exportdir import ExportDir
from segdeploy.vocab import MODEL_ONNX, ONNX_PRECISIONS, Precision


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir")
    ap.add_argument("--frame", default=None, help="HxW of the frames (default: the profile's opt)")
    ap.add_argument("--batch", type=int, default=None, help="frames per call (default: the profile's opt batch)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = ap.parse_args(argv)
    ed = ExportDir.open(args.export_dir)
    prof = ed.profile
    h, w = (int(v) for v in args.frame.lower().split("x")) if args.frame else (prof.opt[2], prof.opt[3])
    n = args.batch or prof.opt[0]
    frames = np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    out = {"export_dir": str(ed.path), "frame": [n, h, w, 3], "threads": args.threads, "repeats": args.repeats,
           "onnxruntime": ort.__version__, "precisions": {}}
    for p in ONNX_PRECISIONS:
        if ed.e2e_file(p):
            plain = ed.file(MODEL_ONNX if p == Precision.FP32 else ed.lowered_file(p))
            out["precisions"][p] = measure_pair(plain, ed.file(ed.e2e_file(p)), frames, ed.preprocess, ed.profile,
                                                iters=args.repeats, threads=args.threads)
    print(json.dumps(out, indent=2))
    return 0 if all(v["class_maps_equal"] for v in out["precisions"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
