#!/usr/bin/env python
"""Calibration side by side: segdeploy's streaming calibration vs ONNX Runtime's calibrators.

    python benchmarks/calibration.py                      # 64, 256, 1024 images; JSON to stdout
    python benchmarks/calibration.py --sizes 64 256 --out benchmarks/results/calibration.json

Same FP32 ONNX model and the same preprocessed images for everyone:
  * model: examples/shapes_unet.pt2 exported with segdeploy.export when present; else the compact U-Net
    of segdeploy.zoo.unet (random init); else segmentation_models_pytorch Unet(resnet18), random init.
  * images: the synthetic shapes set (segdeploy.datasets.shapes, split "calib", 128x128), or random
    textures when that module is missing; fed through segdeploy.calibration's reader (manifest
    preprocessing: the default Preprocess) as batches of 8 to both sides.
  * ours: segdeploy.calibration.calibrate (max, percentile 99.999, entropy), no statistics cache.
  * ONNX Runtime: onnxruntime.quantization.calibrate.create_calibrator with the calibrators and default
    options quantize_static uses (MinMax; Entropy: 128 bins; Percentile: 2048 bins, 99.999), over the
    same tensors ORT selects (every float input/output of every node).

Every (method, N) runs in its own subprocess; its peak RSS is the child's VmHWM from /proc, polled by
the parent (VmHWM, not ru_maxrss, which Linux carries over fork+exec from the parent), which kills a child whose RSS passes --rss-limit-gb and records that honestly. The JSON has
wall time, peak RSS, the RSS right before calibration (model loaded), and per-tensor range comparisons.
Both sides use ONNX Runtime's default intra-op thread count unless --threads is given (ours only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OURS = {"ours_max": ("max", None), "ours_percentile": ("percentile", 99.999), "ours_entropy": ("entropy", None),
        # same, collecting only the activations that feed quantizable ops: the cost of collecting all of them
        "ours_entropy_qinputs": ("entropy", None)}
ORT = {"ort_minmax": "MinMax", "ort_entropy": "Entropy", "ort_percentile": "Percentile"}
BATCH = 8
SIZE = 128


# ---------------------------------------------------------------------------------------------- setup
def build_model(work: Path, pt2: Path | None = None) -> tuple[Path, str]:
    """An FP32 ONNX with input 'input' [N,3,H,W]; returns (path, description)."""
    import torch

    out = work / "model.onnx"
    pt2 = pt2 or ROOT / "examples" / "shapes_unet.pt2"
    if pt2.is_file():
        try:
            from segdeploy.export import ExportOptions
            from segdeploy.pipeline import export_model

            res = export_model(str(pt2), str(work / "export"), ExportOptions(shape=f"1x3x{SIZE}x{SIZE}"))
            return Path(res.onnx_path), f"{pt2.name} (trained compact U-Net) via segdeploy.export"
        except Exception as e:  # the export stage may not be in this checkout yet
            print(f"note: exporting {pt2} failed ({type(e).__name__}: {e}); falling back", file=sys.stderr)
    try:
        from segdeploy.zoo.unet import compact_unet

        torch.manual_seed(0)
        model, desc = compact_unet(num_classes=6), "segdeploy.zoo.unet.compact_unet (random init)"
    except Exception:
        import segmentation_models_pytorch as smp

        torch.manual_seed(0)
        model = smp.Unet("resnet18", encoder_weights=None, classes=6)
        desc = "smp.Unet(resnet18) (random init)"
    model.eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    dyn = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(model, x, str(out), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": dyn, "logits": dyn}, dynamo=False, opset_version=17)
    return out, desc


def build_images(folder: Path, n: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.png")))
    try:
        from segdeploy.datasets import shapes

        if have < n:
            shapes.write_split(folder, n, "calib", size=(SIZE, SIZE), images_only=True)
        return "segdeploy.datasets.shapes split 'calib'"
    except ImportError:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for i in range(have, n):
            base = rng.normal(size=(8, 8, 3))
            img = np.kron(base, np.ones((SIZE // 8, SIZE // 8, 1))) + rng.normal(scale=0.3, size=(SIZE, SIZE, 3))
            img = ((img - img.min()) / (np.ptp(img) + 1e-9) * 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"tex_{i:05d}.png")
        return "random textures"


# ---------------------------------------------------------------------------------------------- worker
def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _maxrss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child of a big
    # parent would report the parent's peak; VmHWM belongs to the child's own address space.
    return _status_mb("VmHWM")


def _noting_progress(note):
    """A silent segdeploy Progress whose counted tasks pass the images done to ``note`` (calibrate() reports its
    images as a "calibrate" task)."""
    from segdeploy.progress import Progress, Task

    class NotedTask(Task):
        def update(self, done: int, total: int | None = None) -> None:
            super().update(done, total)
            note(done)

    class NotingProgress(Progress):
        def task(self, label: str, total: int | None = None, unit: str = "image") -> Task:
            return NotedTask(self, label, total, unit)

    return NotingProgress(enabled=False)


def worker(method: str, model: str, images: str, n: int, threads: int, progress_file: str | None = None) -> dict:
    import numpy as np

    def note(done: int, total: int = 0) -> None:  # images fed so far, read by the parent if it kills us
        if progress_file:
            with open(progress_file, "w") as f:
                f.write(str(done))

    from segdeploy.calibration import Method, calibrate, iter_batches, open_calibration_set
    from segdeploy.spec import Preprocess, ShapeProfile

    pre = Preprocess()
    prof = ShapeProfile((1, 3, 64, 64), (1, 3, SIZE, SIZE), (BATCH, 3, 2 * SIZE, 2 * SIZE))
    if method in OURS:
        kind, pct = OURS[method]
        m = Method(kind, percentile=pct) if pct else Method(kind)
        import onnxruntime  # noqa: F401  (import cost outside the timed region, like the ORT side)

        tensors = None
        if method.endswith("_qinputs"):
            import onnx

            from segdeploy.calibration import quantizable_inputs

            tensors = quantizable_inputs(onnx.load(model))
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        res = calibrate(model, images, preprocess=pre, profile=prof, size=n, seed=0, method=m,
                        batch_size=BATCH, intra_op_threads=threads or None, tensors=tensors,
                        progress=_noting_progress(note))
        wall = time.perf_counter() - t0
        ranges = res.ranges
    else:
        from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

        cset = open_calibration_set(images, size=n, seed=0, profile=prof, preprocess=pre)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter_batches(cset, pre, prof, BATCH)
                self.done = 0

            def get_next(self):
                b = next(self.it, None)
                if b is None:
                    return None
                note(self.done)  # the previous batch went through the model
                self.done += len(b.files)
                return {"input": b.array}

        rss0 = _rss_mb()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as td:
            cal = create_calibrator(model, None, augmented_model_path=os.path.join(td, "aug.onnx"),
                                    calibrate_method=getattr(CalibrationMethod, ORT[method]),
                                    providers=["CPUExecutionProvider"])
            cal.collect_data(Reader())
            data = cal.compute_data()
        wall = time.perf_counter() - t0
        ranges = {}
        for name in data.keys():
            lo, hi = data[name].range_value
            ranges[name] = float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))
    return {"method": method, "n": n, "wall_s": wall, "rss_before_mb": rss0, "maxrss_self_mb": _maxrss_mb(),
            "tensors": len(ranges), "ranges": ranges}


# ---------------------------------------------------------------------------------------------- parent
def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_child(method: str, model: Path, images: Path, n: int, threads: int, limit_mb: float, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False) as tf:
        out_path = tf.name
    cmd = [sys.executable, __file__, "--worker", method, "--model", str(model), "--images", str(images),
           "--n", str(n), "--threads", str(threads), "--worker-out", out_path]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kb, killed = 0, None
    while p.poll() is None:
        hwm = _status_kb(p.pid, "VmHWM")
        rss = _status_kb(p.pid, "VmRSS")
        if hwm:
            peak_kb = max(peak_kb, hwm)
        if rss and rss / 1024.0 > limit_mb:
            killed = f"killed: RSS passed the {limit_mb:.0f} MB limit"
            p.kill()
        elif time.perf_counter() - t0 > timeout:
            killed = f"killed: passed the {timeout:.0f} s timeout"
            p.kill()
        time.sleep(0.05)
    err = p.stderr.read() if p.stderr else ""
    rec = {"method": method, "n": n, "peak_rss_mb": round(peak_kb / 1024.0, 1),
           "elapsed_s": round(time.perf_counter() - t0, 2)}
    prog = out_path + ".progress"
    done = None
    if os.path.exists(prog):
        with open(prog) as f:
            done = int(f.read().strip() or 0)
        os.unlink(prog)
    if killed or p.returncode != 0:
        rec["failed"] = killed or f"exit {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"
        if done is not None:
            rec["images_done_before_failure"] = done
        os.unlink(out_path)
        return rec
    with open(out_path) as f:
        res = json.load(f)
    os.unlink(out_path)
    rec.update({k: res[k] for k in ("wall_s", "rss_before_mb", "maxrss_self_mb", "tensors")})
    rec["wall_s"] = round(rec["wall_s"], 2)
    rec["peak_rss_mb"] = round(max(rec["peak_rss_mb"], res["maxrss_self_mb"]), 1)
    rec["calibration_rss_mb"] = round(rec["peak_rss_mb"] - res["rss_before_mb"], 1)
    rec["_ranges"] = res["ranges"]
    return rec


def _ratio_summary(num: dict, den: dict) -> dict | None:
    import numpy as np

    common = [k for k in num if k in den and den[k] > 0]
    if not common:
        return None
    r = np.array([num[k] / den[k] for k in common])
    return {
        "tensors": len(common),
        "median": round(float(np.median(r)), 4),
        "min": round(float(r.min()), 4),
        "max": round(float(r.max()), 4),
        "clipped_below_0.99": int((r < 0.99).sum()),
        "identical_within_1e-6": int((np.abs(r - 1) <= 1e-6).sum()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--methods", nargs="+", default=list(OURS) + list(ORT))
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "segdeploy_calib_bench"))
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads for ours (0: ORT default, as ORT's calibrator uses)")
    ap.add_argument("--rss-limit-gb", type=float, default=6.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--pt2", default=None, help="torch.export model to export and use (default examples/shapes_unet.pt2)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--images", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        res = worker(a.worker, a.model, a.images, a.n, a.threads, a.worker_out + ".progress")
        with open(a.worker_out, "w") as f:
            json.dump(res, f)
        return 0

    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model, model_desc = build_model(work, Path(a.pt2) if a.pt2 else None)
    images = work / f"images_{SIZE}"
    data_desc = build_images(images, max(a.sizes))
    import onnx
    import onnxruntime

    runs, ranges = [], {}
    for n in a.sizes:
        for m in a.methods:
            rec = run_child(m, model, images, n, a.threads, a.rss_limit_gb * 1024, a.timeout)
            r = rec.pop("_ranges", None)
            if r is not None:
                ranges[(m, n)] = r
            runs.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)

    def largest(m):
        ns = [n for (mm, n) in ranges if mm == m]
        return (ranges[(m, max(ns))], max(ns)) if ns else (None, None)

    cmp = {}
    pairs = [
        ("ours_entropy / ours_max", "ours_entropy", "ours_max"),
        ("ours_percentile / ours_max", "ours_percentile", "ours_max"),
        ("ort_entropy / ort_minmax", "ort_entropy", "ort_minmax"),
        ("ort_percentile / ort_minmax", "ort_percentile", "ort_minmax"),
        ("ours_max / ort_minmax (same data check)", "ours_max", "ort_minmax"),
        ("ours_entropy / ort_entropy", "ours_entropy", "ort_entropy"),
        ("ours_entropy_qinputs / ours_entropy (same tensors, same ranges expected)", "ours_entropy_qinputs", "ours_entropy"),
        ("ours_percentile / ort_percentile", "ours_percentile", "ort_percentile"),
    ]
    for label, x, y in pairs:
        # compare at the largest N both finished
        nx = {n for (m, n) in ranges if m == x}
        ny = {n for (m, n) in ranges if m == y}
        both = sorted(nx & ny)
        if both:
            s = _ratio_summary(ranges[(x, both[-1])], ranges[(y, both[-1])])
            if s:
                s["n"] = both[-1]
                cmp[label] = s
    report = {
        "benchmark": "calibration",
        "model": model_desc,
        "onnx_nodes": len(onnx.load(str(model)).graph.node),
        "data": f"{data_desc}, {SIZE}x{SIZE}, default Preprocess, batch {BATCH}",
        "sizes": a.sizes,
        "threads": a.threads,
        "rss_limit_gb": a.rss_limit_gb,
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "notes": [
            "ours: segdeploy.calibration.calibrate, no cache (each method re-runs the model); percentile 99.999 to match ORT's default",
            "ours_entropy_qinputs: only the activations feeding Conv/ConvTranspose/MatMul/Gemm/pooling/Add (quantizable_inputs); ours_* collect every float activation, as a TensorRT cache expects",
            "ORT's tensor count includes weights behind Identity nodes and Constant outputs; ours counts activations only",
            "ort: create_calibrator defaults as used by quantize_static (Entropy num_bins=128, Percentile num_bins=2048 p=99.999)",
            "peak_rss_mb: child VmHWM; calibration_rss_mb: peak minus RSS right before calibration started (model + data reader ready)",
            "range ratios are per tensor amax ratios over the tensors both sides calibrated, at the largest N both finished",
        ],
        "runs": runs,
        "range_comparison": cmp,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
