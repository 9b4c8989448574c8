#!/usr/bin/env python
"""Calibration side by side: segdeploy's calibration vs ONNX Runtime's calibrators vs the bare forward pass.

    python benchmarks/calibration.py --threads 2 --out benchmarks/results/calibration.json
    python benchmarks/calibration.py --workloads example --sizes 64 256 --threads 2

Workloads (each: one FP32 ONNX, one image folder, batch 8, default Preprocess, the same batches for everyone):
  * example -- examples/shapes_unet.pt2 (the trained compact U-Net) exported by segdeploy.export (fallbacks: the
    compact U-Net of segdeploy.zoo.unet, random init), shapes images (split "calib") at 128x128, --sizes images;
  * unet34  -- segmentation_models_pytorch Unet(resnet34), random init (torch.manual_seed(0)), exported at
    256x256 (dynamic N/H/W), 64 shapes images at 256x256 (--unet34-images).
Runs (each in its own subprocess; wall time of the calibration call or the loop, peak RSS = the child's VmHWM):
  * ort_forward        -- a plain onnxruntime.InferenceSession (ORT's default graph optimisation, ORT_ENABLE_ALL)
                          run over the same batches from segdeploy's reader: the cost floor;
  * ort_forward_basic  -- the same at ORT_ENABLE_BASIC, the level whose activations calibration measures (the
                          floor calibration could reach: the model without the probes);
  * ours_max / ours_percentile / ours_entropy -- segdeploy.calibration.calibrate, no statistics cache
                          (percentile 99.999 to match ORT's default);
  * ort_minmax / ort_entropy / ort_percentile -- onnxruntime.quantization.calibrate.create_calibrator with the
                          defaults quantize_static uses;
  * int8_accuracy      -- one accuracy evaluation of the INT8 Q/DQ model (max ranges) against the PyTorch
                          reference on --val-images labelled images at both ORT levels, as the precision stage
                          runs it (check_accuracy_many);
  * budget_eval        -- one budget-search evaluation (Evaluator.score_model at ORT_DISABLE_ALL) of that model
                          on the same images (the Evaluator's one-time reference pass excluded).
--threads N fixes the ONNX Runtime intra-op threads of every session of every run (ORT's calibrators included)
and torch's threads; 0 leaves each library's default. Every ORT session's idle workers sleep rather than spin
(calibration's setting; see _threading). The JSON records the load average before and after every run.
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

OURS = {"ours_max": ("max", None), "ours_percentile": ("percentile", 99.999), "ours_entropy": ("entropy", None)}
ORT = {"ort_minmax": "MinMax", "ort_entropy": "Entropy", "ort_percentile": "Percentile"}
FORWARD = ("ort_forward", "ort_forward_basic")
EVAL = ("int8_accuracy", "budget_eval")
ALL_RUNS = FORWARD + tuple(OURS) + tuple(ORT) + EVAL
BATCH = 8
CLASSES = 6


# ---------------------------------------------------------------------------------------------- setup
def _export(model, out: Path, size: int) -> None:
    import torch

    dyn = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(model.eval(), torch.randn(1, 3, size, size), str(out), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": dyn, "logits": dyn}, dynamo=False, opset_version=17)


def reference_module(workload: str, work: Path):
    """The PyTorch model of a workload (deterministic), or None when only an ONNX could be made."""
    import torch

    if workload == "unet34":
        import segmentation_models_pytorch as smp

        torch.manual_seed(0)
        return smp.Unet("resnet34", encoder_weights=None, classes=CLASSES).eval()
    pt2 = ROOT / "examples" / "shapes_unet.pt2"
    if (work / "example.pt2.used").is_file() and pt2.is_file():
        from segdeploy.load import load_model

        return load_model(str(pt2)).module
    from segdeploy.zoo.unet import compact_unet

    torch.manual_seed(0)
    return compact_unet(num_classes=CLASSES).eval()


def build_model(workload: str, work: Path, size: int) -> tuple[Path, str]:
    """An FP32 ONNX with input 'input' [N,3,H,W] (built once per work dir); returns (path, description)."""
    out = work / "model.onnx"
    desc_file = work / "model.txt"
    if out.is_file() and desc_file.is_file():
        return out, desc_file.read_text()
    if workload == "unet34":
        _export(reference_module("unet34", work), out, size)
        desc = f"segmentation_models_pytorch Unet(resnet34), random init, exported at {size}x{size}"
    else:
        pt2 = ROOT / "examples" / "shapes_unet.pt2"
        desc = None
        if pt2.is_file():
            try:
                from segdeploy.export import ExportOptions
                from segdeploy.pipeline import export_model

                res = export_model(str(pt2), str(work / "export"), ExportOptions(shape=f"1x3x{size}x{size}"))
                out.write_bytes(Path(res.onnx_path).read_bytes())
                (work / "example.pt2.used").write_text("1")
                desc = f"{pt2.name} (trained compact U-Net) via segdeploy.export"
            except Exception as e:  # noqa: BLE001 - report and fall back
                print(f"note: exporting {pt2} failed ({type(e).__name__}: {e}); falling back", file=sys.stderr)
        if desc is None:
            _export(reference_module("example", work), out, size)
            desc = "segdeploy.zoo.unet.compact_unet (random init)"
    desc_file.write_text(desc)
    return out, desc


def build_images(folder: Path, n: int, size: int, split: str = "calib") -> None:
    from segdeploy.datasets import shapes

    have = len(list(folder.glob("*.png"))) if split == "calib" else len(list((folder / "images").glob("*.png")))
    if have < n:
        shapes.write_split(folder, n, split, size=(size, size), images_only=(split == "calib"))


# ---------------------------------------------------------------------------------------------- worker
def _status_mb(key: str, pid: str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _spec(size: int):
    from segdeploy.spec import Preprocess, ShapeProfile

    return Preprocess(), ShapeProfile((1, 3, 64, 64), (1, 3, size, size), (BATCH, 3, 2 * size, 2 * size))


def _threading(so, threads: int):
    """Every ORT session of every run gets the same threading: ``threads`` intra-op threads (0: ORT's default)
    whose idle workers sleep instead of spinning -- calibration's own setting; on a shared machine a spinning
    pool slows whichever run has it (measured: a plain forward pass 37 % slower at load 4)."""
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _same_threading(threads: int) -> None:
    """Apply :func:`_threading` to sessions made by code we do not control (ORT's calibrators, the runners)."""
    import onnxruntime

    original = onnxruntime.InferenceSession

    def session(path_or_bytes, sess_options=None, *args, **kwargs):
        return original(path_or_bytes, _threading(sess_options or onnxruntime.SessionOptions(), threads), *args, **kwargs)

    onnxruntime.InferenceSession = session


def _noting_progress(note):
    """A silent segdeploy Progress whose counted tasks pass the images done to ``note`` (calibrate() and
    check_accuracy_many() report their images as one counted task)."""
    from segdeploy.progress import Progress, Task

    class NotedTask(Task):
        def update(self, done: int, total: int | None = None) -> None:
            super().update(done, total)
            note(done)

    class NotingProgress(Progress):
        def task(self, label: str, total: int | None = None, unit: str = "image") -> Task:
            return NotedTask(self, label, total, unit)

    return NotingProgress(enabled=False)


def run_forward(kind: str, model: str, images: str, n: int, size: int, threads: int, note) -> float:
    import onnxruntime as ort

    from segdeploy.calibration import iter_batches, open_calibration_set

    pre, prof = _spec(size)
    t0 = time.perf_counter()
    so = _threading(ort.SessionOptions(), threads)
    if kind == "ort_forward_basic":
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    done = 0
    for b in iter_batches(open_calibration_set(images, size=n, seed=0, profile=prof, preprocess=pre), pre, prof, BATCH):
        sess.run(None, {"input": b.array})
        done += len(b.files)
        note(done)
    return time.perf_counter() - t0


def run_ours(kind: str, model: str, images: str, n: int, size: int, threads: int, note) -> tuple[float, dict]:
    from segdeploy.calibration import Method, calibrate

    pre, prof = _spec(size)
    method, pct = OURS[kind]
    t0 = time.perf_counter()
    res = calibrate(model, images, preprocess=pre, profile=prof, size=n, seed=0,
                    method=Method(method, percentile=pct) if pct else Method(method), batch_size=BATCH,
                    intra_op_threads=threads or None, progress=_noting_progress(note))
    return time.perf_counter() - t0, res.ranges


def run_ort(kind: str, model: str, images: str, n: int, size: int, threads: int, note) -> tuple[float, dict]:
    import numpy as np
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    from segdeploy.calibration import iter_batches, open_calibration_set

    _same_threading(threads)
    pre, prof = _spec(size)
    cset = open_calibration_set(images, size=n, seed=0, profile=prof, preprocess=pre)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it, self.done = iter_batches(cset, pre, prof, BATCH), 0

        def get_next(self):
            b = next(self.it, None)
            if b is None:
                return None
            note(self.done)  # the previous batch went through the model
            self.done += len(b.files)
            return {"input": b.array}

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        cal = create_calibrator(model, None, augmented_model_path=os.path.join(td, "aug.onnx"),
                                calibrate_method=getattr(CalibrationMethod, ORT[kind]), providers=["CPUExecutionProvider"])
        cal.collect_data(Reader())
        data = cal.compute_data()
    wall = time.perf_counter() - t0
    ranges = {}
    for name in data.keys():
        lo, hi = data[name].range_value
        ranges[name] = float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))
    return wall, ranges


def run_eval(kind: str, workload: str, work: Path, model: str, images: str, val: str, n: int, size: int,
             threads: int, note) -> tuple[float, int]:
    """(seconds, images) of one INT8 accuracy evaluation or one budget-search evaluation."""
    import onnx
    import torch

    from segdeploy.calibration import Method, calibrate
    from segdeploy.datasets import open_dataset
    from segdeploy.precision.accuracy import Evaluator, check_accuracy_many
    from segdeploy.precision.qdq import quantize_qdq

    if threads:
        torch.set_num_threads(threads)
    pre, prof = _spec(size)
    ranges = calibrate(model, images, preprocess=pre, profile=prof, size=min(n, 64), method=Method("max"),
                       batch_size=BATCH, intra_op_threads=threads or None).ranges
    qdq = quantize_qdq(onnx.load(model), ranges).model
    ref = reference_module(workload, work)
    ds = open_dataset(Path(val) / "images", Path(val) / "masks")
    _same_threading(threads)
    if kind == "int8_accuracy":
        path = work / "int8.onnx"
        path.write_bytes(qdq.SerializeToString())
        t0 = time.perf_counter()
        rep = check_accuracy_many({"int8": str(path)}, ref, ds, preprocess=pre, profile=prof, num_classes=CLASSES,
                                  batch_size=BATCH, progress=_noting_progress(note))["int8"]
        return time.perf_counter() - t0, rep.images
    with Evaluator(ref, ds, preprocess=pre, profile=prof, num_classes=CLASSES, limit=None, batch_size=BATCH) as ev:
        t0 = time.perf_counter()
        ev.score_model(qdq)
        return time.perf_counter() - t0, ev.images


def worker(args) -> dict:
    def note(done: int) -> None:  # images done so far, read by the parent if it kills us
        with open(args.worker_out + ".progress", "w") as f:
            f.write(str(done))

    import onnx  # noqa: F401  (import costs outside the timed region, for everyone: ORT's calibrators import
    import onnxruntime  # noqa: F401  onnx before their clock starts too)

    rss0 = _status_mb("VmRSS")
    common = (args.model, args.images, args.n, args.size, args.threads, note)
    ranges = None
    if args.worker in FORWARD:
        wall, images = run_forward(args.worker, *common), args.n
    elif args.worker in OURS:
        (wall, ranges), images = run_ours(args.worker, *common), args.n
    elif args.worker in ORT:
        (wall, ranges), images = run_ort(args.worker, *common), args.n
    else:
        wall, images = run_eval(args.worker, args.workload, Path(args.work), args.model, args.images, args.val,
                                args.n, args.size, args.threads, note)
    return {"wall_s": wall, "images": images, "rss_before_mb": rss0, "maxrss_self_mb": _status_mb("VmHWM"),
            "tensors": None if ranges is None else len(ranges), "ranges": ranges}


# ---------------------------------------------------------------------------------------------- parent
def run_child(run: str, ctx: dict, a) -> dict:
    """One run in a subprocess, RSS-polled; the record (with ``_ranges``) or a failure record."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False) as tf:
        out_path = tf.name
    cmd = [sys.executable, __file__, "--worker", run, "--workload", ctx["workload"], "--work", str(ctx["work"]),
           "--model", str(ctx["model"]), "--images", str(ctx["images"]), "--val", str(ctx["val"]),
           "--n", str(ctx["n"]), "--size", str(ctx["size"]), "--threads", str(a.threads), "--worker-out", out_path]
    import resource

    load0 = os.getloadavg()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, killed = 0.0, None
    while p.poll() is None:
        peak = max(peak, _status_mb("VmHWM", str(p.pid)) or 0.0)
        rss = _status_mb("VmRSS", str(p.pid)) or 0.0
        if rss > a.rss_limit_gb * 1024:
            killed = f"killed: RSS passed the {a.rss_limit_gb * 1024:.0f} MB limit"
            p.kill()
        elif time.perf_counter() - t0 > a.timeout:
            killed = f"killed: passed the {a.timeout:.0f} s timeout"
            p.kill()
        time.sleep(0.05)
    err = p.stderr.read() if p.stderr else ""
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    rec = {"workload": ctx["workload"], "run": run, "n": ctx["n"], "peak_rss_mb": round(peak, 1),
           "elapsed_s": round(time.perf_counter() - t0, 2), "process_cpu_s": round(cpu, 2),
           "load_before": [round(x, 2) for x in load0],
           "load_after": [round(x, 2) for x in os.getloadavg()]}
    prog = out_path + ".progress"
    done = int(Path(prog).read_text().strip() or 0) if os.path.exists(prog) else None
    if os.path.exists(prog):
        os.unlink(prog)
    if killed or p.returncode != 0:
        rec["failed"] = killed or f"exit {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"
        if done is not None:
            rec["images_done_before_failure"] = done
        os.unlink(out_path)
        return rec
    res = json.loads(Path(out_path).read_text())
    os.unlink(out_path)
    rec.update({"wall_s": round(res["wall_s"], 3), "images": res["images"], "tensors": res["tensors"],
                "seconds_per_image": round(res["wall_s"] / max(res["images"], 1), 5),
                "peak_rss_mb": round(max(peak, res["maxrss_self_mb"]), 1)})
    rec["calibration_rss_mb"] = round(rec["peak_rss_mb"] - res["rss_before_mb"], 1)
    rec["_ranges"] = res["ranges"]
    return rec


def _ratio_summary(num: dict, den: dict) -> dict | None:
    import numpy as np

    common = [k for k in num if k in den and den[k] > 0]
    if not common:
        return None
    r = np.array([num[k] / den[k] for k in common])
    return {"tensors": len(common), "median": round(float(np.median(r)), 4), "min": round(float(r.min()), 4),
            "max": round(float(r.max()), 4), "clipped_below_0.99": int((r < 0.99).sum()),
            "identical_within_1e-6": int((np.abs(r - 1) <= 1e-6).sum())}


RANGE_PAIRS = (("ours_max / ort_minmax (same data check)", "ours_max", "ort_minmax"),
               ("ours_entropy / ours_max", "ours_entropy", "ours_max"),
               ("ours_percentile / ort_percentile", "ours_percentile", "ort_percentile"),
               ("ours_entropy / ort_entropy", "ours_entropy", "ort_entropy"))


def summarise(runs: list[dict], ranges: dict) -> dict:
    """Per workload and N: the ratios the targets are stated in, seconds per image, range comparisons."""
    out: dict = {}
    keys = sorted({(r["workload"], r["n"]) for r in runs})
    for wl, n in keys:
        best = {}
        for r in runs:
            if r["workload"] == wl and r["n"] == n and "wall_s" in r:
                if r["run"] not in best or r["wall_s"] < best[r["run"]]["wall_s"]:
                    best[r["run"]] = r
        wall = {k: v["wall_s"] for k, v in best.items()}
        rss = {k: v["peak_rss_mb"] for k, v in best.items()}

        def ratio(x, y, d=wall):
            return round(d[x] / d[y], 2) if x in d and y in d and d[y] else None

        failed = {r["run"]: r["failed"] + (f" after {r['images_done_before_failure']} images"
                                           if "images_done_before_failure" in r else "")
                  for r in runs if r["workload"] == wl and r["n"] == n and "failed" in r and r["run"] not in best}
        s = {"wall_s (best of repeats)": wall,
             "failed": failed,
             "seconds_per_image": {k: v["seconds_per_image"] for k, v in best.items()},
             "ratios": {f"{x} / {y}": ratio(x, y) for x, y in (
                 ("ours_max", "ort_forward"), ("ours_max", "ort_forward_basic"), ("ours_max", "ort_minmax"),
                 ("ours_entropy", "ort_forward"), ("ours_percentile", "ort_forward"),
                 ("ours_entropy", "ort_entropy"), ("ours_percentile", "ort_percentile"),
                 ("ort_forward_basic", "ort_forward"), ("ort_minmax", "ort_forward"))},
             "peak_rss_ratios": {f"{x} / {y}": ratio(x, y, rss) for x, y in (
                 ("ours_entropy", "ort_entropy"), ("ours_percentile", "ort_percentile"), ("ours_max", "ort_minmax"))},
             "range_comparison": {}}
        for label, x, y in RANGE_PAIRS:
            if (wl, n, x) in ranges and (wl, n, y) in ranges:
                c = _ratio_summary(ranges[(wl, n, x)], ranges[(wl, n, y)])
                if c:
                    s["range_comparison"][label] = c
        out[f"{wl}/{n}"] = s
    return out


def prepare(workload: str, a) -> list[dict]:
    """Model, calibration images and validation split of one workload -> a context per N."""
    size = 256 if workload == "unet34" else 128
    work = Path(a.workdir) / workload
    work.mkdir(parents=True, exist_ok=True)
    model, desc = build_model(workload, work, size)
    sizes = [a.unet34_images] if workload == "unet34" else a.sizes
    images = work / f"images_{size}"
    build_images(images, max(sizes), size)
    val = work / f"val_{size}"
    build_images(val, a.val_images, size, split="val")
    return [{"workload": workload, "work": work, "model": model, "desc": desc, "images": images, "val": val,
             "n": n, "size": size} for n in sizes]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["example", "unet34"], choices=["example", "unet34"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256], help="calibration images for the example workload")
    ap.add_argument("--unet34-images", type=int, default=64)
    ap.add_argument("--val-images", type=int, default=32, help="labelled images for int8_accuracy and budget_eval")
    ap.add_argument("--runs", nargs="+", default=list(ALL_RUNS), choices=list(ALL_RUNS))
    ap.add_argument("--repeat", type=int, default=1, help="run every (workload, run) this many times (interleaved)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "segdeploy_calib_bench"))
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op (and torch) threads of every run; 0: defaults")
    ap.add_argument("--rss-limit-gb", type=float, default=8.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    for hidden in ("--worker", "--worker-out", "--workload", "--work", "--model", "--images", "--val"):
        ap.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        res = worker(a)
        Path(a.worker_out).write_text(json.dumps(res))
        return 0

    import onnx
    import onnxruntime

    contexts = [c for wl in a.workloads for c in prepare(wl, a)]
    runs, ranges = [], {}
    first_n = {}
    for ctx in contexts:
        first_n.setdefault(ctx["workload"], ctx["n"])
    for _ in range(a.repeat):
        for ctx in contexts:
            for run in a.runs:
                if run in EVAL and ctx["n"] != first_n[ctx["workload"]]:
                    continue  # the evaluations use the validation images, not N: once per workload
                rec = run_child(run, ctx, a)
                r = rec.pop("_ranges", None)
                if r is not None:
                    ranges[(ctx["workload"], ctx["n"], run)] = r
                runs.append(rec)
                print(json.dumps(rec), file=sys.stderr, flush=True)
    report = {
        "benchmark": "calibration",
        "command": "python benchmarks/calibration.py " + " ".join(sys.argv[1:]),
        "workloads": {c["workload"]: {"model": c["desc"], "onnx_nodes": len(onnx.load(str(c["model"])).graph.node),
                                      "image_size": c["size"], "batch": BATCH, "val_images": a.val_images}
                      for c in contexts},
        "threads": a.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "uptime_at_end": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        "notes": [
            "ours: segdeploy.calibration.calibrate without statistics cache; max reduces each activation inside ONNX "
            "Runtime (nothing materialised), percentile/entropy bin histograms on worker threads",
            "ort_forward is the floor: an InferenceSession at ORT's default graph optimisation over the same batches "
            "(reader included); calibration measures ORT_ENABLE_BASIC activations (ranges never depend on ORT's NCHWc "
            "layout, which observing every tensor defeats anyway); ort_forward_basic is that session without probes",
            "every ORT session of every run: --threads intra-op threads, idle workers sleep (no spinning)",
            "ORT's tensor count includes weights behind Identity nodes and Constant outputs; ours counts activations only",
            "peak_rss_mb: child VmHWM; calibration_rss_mb: peak minus RSS when the worker started",
            "int8_accuracy / budget_eval: seconds_per_image over --val-images labelled images (INT8 from ours_max ranges)",
            "load_before/load_after: os.getloadavg() around each run (the machine may be shared); process_cpu_s: the "
            "child's whole CPU time (imports, setup and ONNX Runtime's spinning threads included) -- steadier than "
            "wall time on a loaded machine, but not what the targets are stated in",
        ],
        "summary": summarise(runs, ranges),
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
