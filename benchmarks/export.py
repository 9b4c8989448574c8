"""Export + verify time per model, segdeploy vs plain `torch.onnx.export(dynamo=True)`, on the export matrix.

For each matrix row (random init, the row's small profile):
* segdeploy: `export_model` (rewrites, exporter choice, clean-up, verification at 4 shapes);
* plain: `torch.onnx.export(model, x, dynamo=True, dynamic_shapes=<batch/height/width dims>)` as a user
  would write it, then judged by the same verification (ONNX Runtime vs PyTorch at the same 4 shapes).
"right" means the graph runs and matches PyTorch at every shape. Prints one JSON document.

    python benchmarks/export.py [--rows smp.Unet,smp.PSPNet] [--out benchmarks/results/export.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch


def plain_dynamo(model, profile, path: Path) -> None:
    from torch.export import Dim

    n, c, h, w = profile.opt
    x = torch.randn(max(2, n), c, h, w)
    spec = {0: Dim("batch", min=profile.min[0], max=profile.max[0])}
    if profile.min[2] != profile.max[2]:
        spec[2] = Dim("height", min=profile.min[2], max=profile.max[2])
        spec[3] = Dim("width", min=profile.min[3], max=profile.max[3])
    torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                      dynamic_shapes=(spec,))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", help="comma-separated matrix row names (default: all)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model
    from segdeploy.export.matrix import BY_NAME, ROWS
    from segdeploy.export.verify import verify_onnx

    rows = [BY_NAME[n] for n in args.rows.split(",")] if args.rows else ROWS
    results = []
    for row in rows:
        entry: dict = {"model": row.name}
        model = row.build()
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            try:
                res = export_model(model, d, ExportOptions(shape=row.shape, max_batch=2))
                entry["segdeploy"] = {
                    "right": res.verification.passed,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "exporter": res.exporter,
                    "rewrites": sorted({r.rewrite for r in res.rewrites}),
                    "dynamic_axes": list(res.profile.dynamic_axes),
                    "worst_max_abs_err": res.verification.worst_max_abs_err,
                    "min_argmax_agreement": res.verification.min_argmax_agreement,
                }
                profile = res.profile
                reference = res.loaded.module  # the model with its score-map output selected (torchvision: ['out'])
            except Exception as e:
                entry["segdeploy"] = {"right": False, "seconds": round(time.perf_counter() - t0, 1), "error": str(e)[:300]}
                profile = None
            if profile is not None:
                t0 = time.perf_counter()
                p = Path(d) / "plain.onnx"
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        plain_dynamo(model, profile, p)
                    t_export = time.perf_counter() - t0
                    import onnx  # the dynamo exporter may write weights as external data beside the file

                    rep = verify_onnx(reference, onnx.load(str(p)).SerializeToString(), profile)
                    bad = next((s for s in rep.shapes if not s.passed), None)
                    entry["plain_dynamo"] = {
                        "right": rep.passed,
                        "export_seconds": round(t_export, 1),
                        "seconds_with_same_verification": round(time.perf_counter() - t0, 1),
                        "failure": None if bad is None else f"{bad.label} {list(bad.shape)}: {bad.error}",
                    }
                except Exception as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    entry["plain_dynamo"] = {"right": False, "export_seconds": round(time.perf_counter() - t0, 1),
                                             "failure": f"export failed: {type(e).__name__}: {first[:200]}"}
        results.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    doc = {
        "benchmark": "export",
        "torch": torch.__version__,
        "rows": results,
        "right": {
            "segdeploy": sum(bool(r.get("segdeploy", {}).get("right")) for r in results),
            "plain_dynamo": sum(bool(r.get("plain_dynamo", {}).get("right")) for r in results),
            "of": len(results),
        },
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
