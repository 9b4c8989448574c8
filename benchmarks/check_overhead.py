#!/usr/bin/env python
"""The parity checker's throughput against the bare runners, printed as JSON.

    python benchmarks/check_overhead.py [--out benchmarks/results/check_overhead.json] [--batch-sizes 1 8]
                                        [--repeat 5] [--threads 2] [--workdir DIR]

What is compared, on the same preprocessed batches of the example's 64-image validation split
(calibration/shapes/val, 128 px, with masks), reference = examples/shapes_unet.pt2 (torch, CPU) and
candidate = its exported model.onnx (ONNX Runtime CPU):

* ``check``: ``segdeploy.parity.check.run_check`` with its own runners, opened and warmed up (decode, preprocess, both runners, argmax, restore to the
  original size, three confusion-matrix updates, worst-image bookkeeping); images/s = images / loop time
  (the report's ``timing.loop_s``: runners already open);
* ``bare_pair``: a loop of ``reference.infer(x); candidate.infer(x)`` over the same batches, decoded and
  preprocessed beforehand (nothing but the two runners); images/s = images / loop time;
* ``bare_candidate``: ``candidate.infer(x)`` alone, for scale.

``overhead_vs_bare_pair`` = bare_pair images/s / check images/s - 1 (the extra time per image the check adds
on top of running both models), from the best of ``--repeat`` alternating runs of each (best-of-N: on a
machine with noisy neighbours the slow runs measure the neighbours), next to the report's own
``overhead_fraction`` ((loop - runner time) / runner time, measured inside the same loop, so immune to
run-to-run drift; median over the runs). The JSON keeps every run, the medians and the check's time split. The example is exported first
(``python -m segdeploy export``, into --workdir or a temporary directory) unless --workdir already holds it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _export(model: Path, out: Path) -> None:
    if (out / "manifest.json").is_file():
        return
    cmd = [sys.executable, "-m", "segdeploy", "export", str(model), "--out", str(out), "--shape", "1x3x128x128",
           "--class-names", "background,circle,square,triangle,ring,star", "-q"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _batches(images: Path, masks: Path, preprocess, profile, batch_size: int):
    """The batches run_check forms: consecutive images of one padded size, at most batch_size each."""
    from segdeploy.datasets import open_dataset
    from segdeploy.datasets.preprocess import target_size, to_batch

    ds = open_dataset(str(images), str(masks))
    groups, group, size = [], [], None
    for e in ds.entries:
        s = ds.load(e)
        t = target_size(s.image.shape[0], s.image.shape[1], preprocess, profile)
        if group and (t != size or len(group) >= batch_size):
            groups.append(group)
            group = []
        group.append(s.image)
        size = t
    if group:
        groups.append(group)
    return [to_batch(g, preprocess, profile)[0] for g in groups], len(ds)


def _bare(ref, cand, batches, pair: bool) -> float:
    t0 = time.perf_counter()
    for x in batches:
        if pair:
            ref.infer(x)
        cand.infer(x)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "shapes_unet.pt2")
    ap.add_argument("--data", type=Path, default=ROOT / "calibration" / "shapes" / "val")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from segdeploy.exportdir import ExportDir
    from segdeploy.parity.check import CheckOptions, run_check
    from segdeploy.runners import open_runner
    from segdeploy.runners.onnxruntime import OrtOptions
    from segdeploy.runners.torch import TorchOptions

    if args.threads:
        torch.set_num_threads(args.threads)  # a script, not the library: process state is ours to set
    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="segdeploy-check-overhead-")
        work = Path(tmp.name)
    export = work / "shapes"
    _export(args.model, export)
    ed = ExportDir.open(export)
    images, masks = args.data / "images", args.data / "masks"
    cand_opts = OrtOptions(intra_op_num_threads=args.threads)
    result = {
        "benchmark": "check_overhead",
        "command": "python benchmarks/check_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "reference": str(args.model), "candidate": str(export / "model.onnx"), "data": str(args.data),
        "threads": args.threads, "torch_threads": torch.get_num_threads(), "repeat": args.repeat, "rows": [],
    }
    for bs in args.batch_sizes:
        batches, n_images = _batches(images, masks, ed.preprocess, ed.profile, bs)
        ref = open_runner(str(args.model), kind="torch", options=TorchOptions()).open()
        cand = open_runner(str(export / "model.onnx"), kind="onnxruntime", options=cand_opts).open()
        _bare(ref, cand, batches[:2], pair=True)  # warm up both
        runs = {"check": [], "bare_pair": [], "bare_candidate": [], "check_overhead_fraction": []}
        for _ in range(args.repeat):
            # the check gets its own runners, opened and warmed like the bare ones (run_check closes them)
            ref_c = open_runner(str(args.model), kind="torch", options=TorchOptions()).open()
            cand_c = open_runner(str(export / "model.onnx"), kind="onnxruntime", options=cand_opts).open()
            _bare(ref_c, cand_c, batches[:2], pair=True)
            ref_c.timings.clear()  # the report's runner totals count the check's own calls only
            cand_c.timings.clear()
            res = run_check(ref_c, cand_c, str(images), str(masks), manifest=str(export),
                            options=CheckOptions(batch_size=bs, worst_k=8))
            timing = res.report["timing"]
            runs["check"].append(n_images / timing["loop_s"])
            runs["check_overhead_fraction"].append(timing["overhead_fraction"])
            runs.setdefault("check_timing", []).append({k: timing[k] for k in (
                "load_s", "preprocess_s", "metrics_s", "loop_s")} | {
                "reference_s": timing["reference"]["total_s"], "candidate_s": timing["candidate"]["total_s"]})
            runs["bare_pair"].append(n_images / _bare(ref, cand, batches, pair=True))
            runs["bare_candidate"].append(n_images / _bare(ref, cand, batches, pair=False))
        ref.close()
        cand.close()
        best = {k: max(runs[k]) for k in ("check", "bare_pair", "bare_candidate")}
        med = {k: statistics.median(v) for k, v in runs.items() if k != "check_timing"}
        row = {
            "batch_size": bs, "images": n_images, "batches": len(batches),
            "check_images_per_s": round(best["check"], 2),
            "bare_pair_images_per_s": round(best["bare_pair"], 2),
            "bare_candidate_images_per_s": round(best["bare_candidate"], 2),
            "overhead_vs_bare_pair": round(best["bare_pair"] / best["check"] - 1.0, 4),
            "check_report_overhead_fraction_median": round(med["check_overhead_fraction"], 4),
            "median_images_per_s": {k: round(med[k], 2) for k in ("check", "bare_pair", "bare_candidate")},
            "runs": {k: [round(v, 3) if isinstance(v, float) else v for v in vs] for k, vs in runs.items()},
        }
        result["rows"].append(row)
        print(f"batch {bs}: check {row['check_images_per_s']} img/s, bare pair {row['bare_pair_images_per_s']} img/s "
              f"(best of {args.repeat}): overhead {100 * row['overhead_vs_bare_pair']:.1f} %; in-loop overhead "
              f"{100 * row['check_report_overhead_fraction_median']:.1f} %", file=sys.stderr)
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
