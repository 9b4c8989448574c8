#!/usr/bin/env python
"""CPU latency of every runner side by side: torch eager vs torch.compile vs ONNX Runtime FP32 vs INT8, as JSON.

    python benchmarks/bench_cpu.py [--out benchmarks/results/bench_cpu.json] [--threads 1 2] [--iters 10]
                                   [--workdir DIR] [--quick]

Models (each exported by segdeploy with INT8, then measured by `segdeploy bench`, each run in its own process):

* the shipped example ``examples/shapes_unet.pt2``, exported with
  ``segdeploy export examples/shapes_unet.pt2 --out DIR --shape 1x3x128x128 --int8 --calib calibration/shapes/calib``,
  measured at its opt shape 1x3x128x128;
* smp ``Unet`` and ``DeepLabV3Plus`` (resnet18 encoder, encoder_weights=None, random init with seed 0, 6 classes),
  saved as torch.export programs (dynamic batch, H/W multiples of 32), exported with
  ``--shape 1x3x256x256 --int8 --calib calibration/shapes/calib`` (profile 128..512 px) and measured at 256 and 512.

Each (model, threads) is one command ``python -m segdeploy bench MODEL.pt2 EXPORT_DIR --runner torch --runner
torch-compile --runner ort-cpu --shape ... --threads T --iters N --warmup W --json``: four targets measured
interleaved in one process (rotating round-robin, a 50 ms pause and one untimed call before each timed call),
so the ratios are fair on a shared machine; the absolute milliseconds are upper bounds there, and each row
records the 1-minute load average before and after its run (above the thread count: other jobs competed). The JSON keeps every bench document (schema ``segdeploy.bench``, see
docs/bench.md) and a summary row per (model, shape, threads) with the p50 latencies, speed-ups against eager,
and what ONNX Runtime really executes for the INT8 model (its int8-kernel and Q/DQ node counts).
``interference``: the example's four targets at the highest thread count, back to back
(``--switch-gap-ms 0 --settle-calls 0``) vs bench's defaults, 3 alternating repeats: the evidence for the
pause + settle call before each timed call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALIB = ROOT / "calibration" / "shapes" / "calib"
CLASSES = "background,circle,square,triangle,ring,star"


def _run(cmd: list[str]) -> str:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"command failed with exit {proc.returncode}")
    return proc.stdout


def _save_smp(arch: str, path: Path) -> None:
    import segmentation_models_pytorch as smp
    import torch
    from torch.export import Dim

    torch.manual_seed(0)
    model = getattr(smp, arch)("resnet18", encoder_weights=None, classes=6).eval()
    dyn = {"x": {0: Dim("batch", min=1, max=8), 2: 32 * Dim("h", min=2, max=32), 3: 32 * Dim("w", min=2, max=32)}}
    ep = torch.export.export(model, (torch.zeros(2, 3, 256, 256),), dynamic_shapes=dyn)  # batch 2: stays dynamic
    torch.export.save(ep, str(path))


def _summary(name: str, doc: dict) -> list[dict]:
    t = doc["targets"]
    by_runner = {(x["runner"], x["precision"]): x["index"] for x in t}
    cols = {"torch_eager": ("torch", "fp32"), "torch_compile": ("torch-compile", "fp32"),
            "ort_fp32": ("ort-cpu", "fp32"), "ort_int8": ("ort-cpu", "int8")}
    rows = []
    for shape in doc["shapes"]:
        res = {r["target"]: r for r in doc["results"] if r["shape"] == shape}
        row = {"model": name, "shape": shape, "threads": doc["settings"]["threads"],
               "rounds": doc["timed_rounds"]["x".join(map(str, shape))]}
        eager = res[by_runner[cols["torch_eager"]]]["latency_ms"]["p50"]
        for col, key in cols.items():
            i = by_runner.get(key)
            if i is None:
                continue
            r = res[i]
            row[f"{col}_p50_ms"] = round(r["latency_ms"]["p50"], 2)
            row[f"{col}_p90_ms"] = round(r["latency_ms"]["p90"], 2)
            row[f"{col}_speedup_vs_eager"] = round(eager / r["latency_ms"]["p50"], 2)
            row[f"{col}_peak_rss_mb"] = (round(t[i]["memory"]["peak_rss_growth_bytes"] / 2**20)
                                         if t[i]["memory"]["peak_rss_growth_bytes"] is not None else None)
        i8 = by_runner.get(cols["ort_int8"])
        if i8 is not None and t[i8].get("execution"):
            row["ort_int8_execution"] = t[i8]["execution"]["ort_cpu_int8"]
        rows.append(row)
    return rows


def _interference(py: list[str], work: Path, threads: int, iters: int, warmup: int) -> list[dict]:
    """Why bench pauses and settles between targets: the example's four targets at the highest thread count,
    back to back (--switch-gap-ms 0 --settle-calls 0) vs the defaults, three times each, alternating."""
    model, export = ROOT / "examples" / "shapes_unet.pt2", work / "shapes_unet_export"
    base = py + ["bench", str(model), str(export), "--runner", "torch", "--runner", "torch-compile", "--runner",
                 "ort-cpu", "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup), "--json", "-q"]
    rows = []
    for rep in range(3):
        for mode, extra in (("back_to_back", ["--switch-gap-ms", "0", "--settle-calls", "0"]), ("default", [])):
            load = os.getloadavg()[0]
            doc = json.loads(_run(base + extra))
            rows.append({"mode": mode, "repeat": rep, "threads": threads, "loadavg_1min_before": round(load, 2),
                         "p50_ms": {doc["targets"][r["target"]]["label"]: round(r["latency_ms"]["p50"], 2)
                                    for r in doc["results"]}})
            print(f"interference {mode}: {rows[-1]['p50_ms']}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iters", type=int, default=10, help="timed rounds per shape (the example gets 3x)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="keep models and exports here (reused when present)")
    ap.add_argument("--quick", action="store_true", help="the example only, 1 thread, 5 rounds (smoke run)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.threads, args.iters = [1], 5

    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="segdeploy-bench-cpu-")
        work = Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "segdeploy"]
    # (name, smp architecture or None, model file, export opt shape, bench shapes, rounds multiplier)
    models = [("shapes_unet (example)", None, ROOT / "examples" / "shapes_unet.pt2", "1x3x128x128", ["1x3x128x128"], 3)]
    if not args.quick:
        for arch in ("Unet", "DeepLabV3Plus"):
            models.append((f"smp.{arch}(resnet18)", arch, work / f"{arch.lower()}.pt2", "1x3x256x256",
                           ["1x3x256x256", "1x3x512x512"], 1))
    result: dict = {
        "benchmark": "bench_cpu",
        "command": "python benchmarks/bench_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "exports": [], "runs": [], "summary": [],
    }
    t_all = time.perf_counter()
    for name, arch, model, opt, shapes, iters_mult in models:
        if arch is not None and not model.is_file():
            _save_smp(arch, model)
        export = work / (model.stem + "_export")
        export_cmd = py + ["export", str(model), "--out", str(export), "--shape", opt, "--int8", "--calib", str(CALIB),
                           "--class-names", CLASSES, "-q"]
        seconds = None  # reused from --workdir
        if not (export / "manifest.json").is_file():
            t0 = time.perf_counter()
            _run(export_cmd)
            seconds = round(time.perf_counter() - t0, 1)
        result["exports"].append({"model": name, "command": "segdeploy " + " ".join(export_cmd[3:]),
                                  "seconds": seconds})
        for threads in args.threads:
            cmd = py + ["bench", str(model), str(export), "--runner", "torch", "--runner", "torch-compile",
                        "--runner", "ort-cpu", "--threads", str(threads), "--iters", str(args.iters * iters_mult),
                        "--warmup", str(args.warmup), "--json", "-q"]
            for s in shapes:
                cmd += ["--shape", s]
            load_before = os.getloadavg()
            doc = json.loads(_run(cmd))
            load_after = os.getloadavg()
            doc["command"] = " ".join(["segdeploy"] + cmd[3:])
            result["runs"].append({"model": name, "threads": threads, "document": doc,
                                   "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)]})
            rows = _summary(name, doc)
            for r in rows:
                r["loadavg_1min_before_after"] = [round(load_before[0], 2), round(load_after[0], 2)]
            result["summary"] += rows
            for r in rows:
                print(f"{name} {'x'.join(map(str, r['shape']))} threads {threads}: eager {r['torch_eager_p50_ms']} ms, "
                      f"compile {r['torch_compile_p50_ms']}, ORT fp32 {r['ort_fp32_p50_ms']}, "
                      f"ORT int8 {r['ort_int8_p50_ms']}", file=sys.stderr, flush=True)
    if not args.quick:
        result["interference"] = _interference(py, work, max(args.threads), args.iters * 3, args.warmup)
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
