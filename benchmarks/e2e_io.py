"""End-to-end variant vs plain model on ONNX Runtime (CPU): bytes copied in/out per frame and latency, side by side.

    python benchmarks/e2e_io.py EXPORT_DIR [--frame 128x128] [--batch 1] [--repeats 30] [--threads 1]

EXPORT_DIR holds model[.<prec>].onnx and the end-to-end variants (``segdeploy export ... --end-to-end``, or the
e2e stage run on it). For each precision with both files, the same seeded uint8 RGB frames go

* plain: host preprocessing (:func:`segdeploy.datasets.preprocess.to_batch`: float32 NCHW, padded) -> session.run ->
  host crop + argmax over the K score planes -> class map;
* end-to-end: session.run on the uint8 NHWC frames -> class map (preprocessing, pad, crop, argmax in the graph).

Both class maps are compared (they must be equal). Prints JSON: per precision the median milliseconds of each
part, the totals and their ratio, and the bytes each path moves across the model boundary per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segdeploy.datasets.preprocess import to_batch
from segdeploy.exportdir import ExportDir
from segdeploy.vocab import (
    E2E_INPUT_NAME,
    INPUT_NAME,
    MODEL_ONNX,
    ONNX_PRECISIONS,
    Precision,
)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _median_ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 3)


def bench_precision(ed: ExportDir, p: str, frames: np.ndarray, repeats: int, threads: int) -> dict:
    plain_file = MODEL_ONNX if p == Precision.FP32 else ed.lowered_file(p)
    plain, e2e = _session(ed.file(plain_file), threads), _session(ed.file(ed.e2e_file(p)), threads)
    n, h, w = frames.shape[:3]
    times = {"host_pre": [], "run": [], "host_post": [], "e2e_run": []}
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        x, _ = to_batch(list(frames), ed.preprocess, ed.profile)
        t1 = time.perf_counter()
        scores = plain.run(None, {INPUT_NAME: x})[0]
        t2 = time.perf_counter()
        ref = scores[:, :, :h, :w].argmax(1).astype(np.uint8)
        t3 = time.perf_counter()
        got = e2e.run(None, {E2E_INPUT_NAME: frames})[0]
        t4 = time.perf_counter()
        if i >= 3:
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[k].append(v)
    plain_total = [a + b + c for a, b, c in zip(times["host_pre"], times["run"], times["host_post"])]
    return {
        "plain_onnx": plain_file, "e2e_onnx": ed.e2e_file(p), "class_maps_equal": bool(np.array_equal(ref, got)),
        "ms": {**{k: _median_ms(v) for k, v in times.items()}, "plain_total": _median_ms(plain_total)},
        "speedup_total": round(statistics.median(plain_total) / statistics.median(times["e2e_run"]), 2),
        "bytes_per_frame": {"plain": {"in": x.nbytes // n, "out": scores.nbytes // n},
                            "end_to_end": {"in": frames.nbytes // n, "out": got.nbytes // n}},
    }


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
            out["precisions"][p] = bench_precision(ed, p, frames, args.repeats, args.threads)
    print(json.dumps(out, indent=2))
    return 0 if all(v["class_maps_equal"] for v in out["precisions"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
