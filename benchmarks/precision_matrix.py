"""The trained precision matrix: what FP16 and INT8 (per calibration method, ours and ONNX Runtime's) cost each
seed architecture in mIoU points, and which layers the budget search keeps in float. Prints JSON.

usage: python benchmarks/precision_matrix.py [--rows smp.Segformer,zoo.segnet] [--tiny] [--size 64]
                                             [--train-images 384] [--train-seconds 180] [--threads 1]
                                             [--out benchmarks/results/precision_matrix.json]

Per row (a randomly initialised model from :data:`ROWS`, no weights downloaded):

1. **train** on the shapes generator's ``train`` split (indices 0..N-1) at ``--size`` px, AdamW + cross-entropy,
   random flips, for ``--train-seconds`` of wall time (x ``--transformer-time-factor`` on transformer rows; LR
   warm-up + cosine over that time); validation mIoU
   (PyTorch, float32) on the ``val`` split is recorded with the chance level (the majority-class predictor's
   mIoU on the same split). Calibration uses the ``calib`` split; the three splits come from different seed
   streams, so they are disjoint by construction (segdeploy.datasets.shapes);
2. **export** with segdeploy (dynamic batch/H/W, verified), collect the calibration **histograms once**;
3. **FP16** (``convert_fp16`` with the calibration absmax) and **INT8** with segdeploy's placer and the ranges of
   each of our methods (``max``, ``entropy``, ``percentile`` 99.99, ``auto`` = the default, with its per-tensor
   choice counted by the producing op type), and ONNX Runtime's ``quantize_static`` (QDQ, symmetric int8
   activations and per-channel weights, its own placement) with MinMax / Entropy / Percentile;
4. every candidate scored in ONE pass over the validation split at ORT_DISABLE_ALL (Q/DQ emulated node by node):
   mIoU drop in points vs the PyTorch model, both against the masks;
5. **budget**: ``search_budget`` at ``--budget`` (0.5) points from the default ranges on ``--budget-images``
   validation images: layers kept in float (name, op), evaluations, seconds.

Rows that fail (export, training, quantization) are recorded with the error and the run goes on. ``--tiny``
(for CI) trains a few steps at 64 px on few images: the JSON's structure and finiteness are what it proves.
Disjointness of the train split from calibration/validation: the shapes generator's split seed streams.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NUM_CLASSES = 6  # the shapes set: background + 5 shapes
WELL_ABOVE_CHANCE = 10.0  # mIoU points above the majority-class predictor for a row to count as trained
LOSS = "cross-entropy + foreground soft Dice"
OURS = ("max", "entropy", "percentile", "auto")
ORT_METHODS = ("MinMax", "Entropy", "Percentile")


@dataclass(frozen=True)
class Row:
    name: str
    family: str  # smp | torchvision | zoo
    build: Callable[[], object]
    transformer: bool = False
    size: int | None = None  # training/eval side when the architecture needs more than --size
    note: str = ""


def _smp(arch: str, encoder: str = "resnet18", **kw) -> Callable[[], object]:
    def build():
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=NUM_CLASSES, **kw)

    return build


def _tv(name: str) -> Callable[[], object]:
    def build():
        import torch
        import torchvision

        class LogitsOnly(torch.nn.Module):  # torchvision returns {"out": logits}
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)["out"]

        m = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
        return LogitsOnly(m)

    return build


def _zoo(name: str) -> Callable[[], object]:
    def build():
        from segdeploy import zoo

        return zoo.create(name, num_classes=NUM_CLASSES)

    return build


ROWS: list[Row] = [
    Row("smp.Segformer(mit_b0)", "smp", _smp("Segformer", "mit_b0"), transformer=True),
    Row("smp.UPerNet(mit_b0)", "smp", _smp("UPerNet", "mit_b0"), transformer=True),
    Row("smp.Unet", "smp", _smp("Unet")),
    Row("smp.DeepLabV3Plus", "smp", _smp("DeepLabV3Plus")),
    Row("tv.lraspp_mobilenet_v3_large", "torchvision", _tv("lraspp_mobilenet_v3_large")),
    Row("smp.FPN", "smp", _smp("FPN")),
    Row("zoo.bisenet", "zoo", _zoo("bisenet")),
    Row("zoo.segnet", "zoo", _zoo("segnet")),
    Row("smp.Linknet", "smp", _smp("Linknet")),
    Row("smp.PSPNet", "smp", _smp("PSPNet")),
    Row("smp.DeepLabV3", "smp", _smp("DeepLabV3")),
    Row("smp.UPerNet", "smp", _smp("UPerNet")),
    Row("zoo.fcn8s", "zoo", _zoo("fcn8s")),
    Row("smp.UnetPlusPlus", "smp", _smp("UnetPlusPlus")),
    Row("smp.MAnet", "smp", _smp("MAnet")),
    Row("zoo.refinenet", "zoo", _zoo("refinenet")),
    Row("zoo.hrnet", "zoo", _zoo("hrnet")),
    Row("zoo.ocrnet", "zoo", _zoo("ocrnet")),
    Row("smp.PAN", "smp", _smp("PAN"), size=256,
        note="its pyramid attention pools the 1/32 map three more times: 256 px is its smallest input"),
]
BY_NAME = {r.name: r for r in ROWS}
ALIASES = {"unet": "smp.Unet", "segformer": "smp.Segformer(mit_b0)"}


# ----------------------------------------------------------------------------------------------------- data


def write_splits(root: Path, size: int, calib_images: int, val_images: int) -> tuple[Path, Path]:
    """The calibration folder (images only) and the labelled validation split, from the shapes generator."""
    from segdeploy.datasets import shapes

    shapes.write_split(root / "calib", calib_images, split="calib", size=(size, size), images_only=True)
    shapes.write_split(root / "val", val_images, split="val", size=(size, size))
    return root / "calib", root / "val"


def chance_miou(masks) -> float:
    """mIoU of predicting the majority class everywhere (the classes present in the truth count)."""
    import numpy as np

    counts = np.bincount(np.concatenate([m.ravel() for m in masks]).astype(np.int64), minlength=NUM_CLASSES)
    present = int((counts > 0).sum())
    return float(counts.max() / counts.sum()) / present


# ------------------------------------------------------------------------------------------------- training


def _loader(n: int, size: int, split: str):
    import numpy as np
    import torch

    from segdeploy.datasets import shapes

    imgs = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    for i, img, m in shapes.generate(n, size=(size, size), split=split):
        imgs[i], masks[i] = img, m
    return torch.from_numpy(imgs), torch.from_numpy(masks)


def _to_input(u8):
    import torch

    from segdeploy.spec import Preprocess

    p = Preprocess()
    mean = torch.tensor(p.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(p.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (u8.permute(0, 3, 1, 2).float() * float(p.scale) - mean) / std


def _miou(model, imgs, masks) -> float:
    import numpy as np
    import torch

    from segdeploy.metrics import ConfusionMatrix

    cm = ConfusionMatrix(NUM_CLASSES, None)
    model.eval()
    with torch.no_grad():
        for s in range(0, len(imgs), 16):
            pred = model(_to_input(imgs[s:s + 16])).argmax(1).numpy()
            for p, t in zip(pred, masks[s:s + 16].numpy()):
                cm.update(p.astype(np.int64), t.astype(np.int64))
    return float(cm.summary()["miou"])


def _lr_factor(elapsed: float, budget: float) -> float:
    """Warm-up over the first 5 % of the time budget, then cosine decay to 2 % at its end (time, not steps:
    the step rate depends on how busy the machine is)."""
    f = min(1.0, elapsed / budget)
    return max(f / 0.05, 0.02) if f < 0.05 else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (f - 0.05) / 0.95))


def _dice_loss(logits, target):
    """1 - soft Dice over the foreground classes: without it a briefly trained model predicts background only
    (the majority class; cross-entropy alone reached the chance level in 180 s on every CNN tried)."""
    from torch.nn import functional as F

    prob = logits.float().softmax(1)
    onehot = F.one_hot(target.long(), NUM_CLASSES).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).sum((0, 2, 3))
    card = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1.0 - ((2 * inter + 1.0) / (card + 1.0))[1:].mean()


def train(model, size: int, seconds: float, a: argparse.Namespace) -> dict:
    """Train in place on the train split for ``seconds`` of wall time (or ``--train-epochs``); returns the training
    record (validation mIoU and the majority-class chance level in points, epochs, steps, seconds)."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(0)
    x_tr, y_tr = _loader(a.train_images, size, "train")
    x_va, y_va = _loader(a.val_images, size, "val")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    t0, epochs, steps, loss = time.perf_counter(), 0, 0, torch.zeros(())
    model.train()
    while epochs < a.train_epochs and time.perf_counter() - t0 < seconds:
        order = torch.randperm(len(x_tr), generator=g)
        for s in range(0, len(order) - 1, a.batch):  # at least 2 samples per batch (BatchNorm)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
            for group in opt.param_groups:
                group["lr"] = a.lr * _lr_factor(elapsed, seconds)
            x, y = x_tr[order[s:s + a.batch]], y_tr[order[s:s + a.batch]]
            if torch.rand(1, generator=g).item() < 0.5:
                x, y = x.flip(2), y.flip(2)
            logits = model(_to_input(x))
            loss = F.cross_entropy(logits, y.long()) + _dice_loss(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        epochs += 1
    return {"train_images": len(x_tr), "size": size, "budget_seconds": seconds, "loss": LOSS, "epochs": epochs,
            "steps": steps,
            "seconds": round(time.perf_counter() - t0, 1), "final_loss": round(float(loss.detach()), 4),
            "val_miou_points": round(100 * _miou(model, x_va, y_va), 2),
            "chance_miou_points": round(100 * chance_miou(y_va.numpy()), 2)}


# ----------------------------------------------------------------------------------------------- candidates


def _producers(model) -> dict[str, str]:
    prod = {i.name: "graph input" for i in model.graph.input}
    for n in model.graph.node:
        for o in n.output:
            prod[o] = n.op_type
    return prod


def our_candidates(fp32, stats, work: Path) -> tuple[dict[str, Path], dict]:
    """INT8 per method of ours (segdeploy's placer) -> paths, plus per-method facts (layers, auto's choices)."""
    import onnx

    from segdeploy.calibration.methods import Method, compute_ranges_chosen
    from segdeploy.precision.qdq import check_trt_qdq, quantize_qdq

    prod = _producers(fp32)
    paths, facts, ranges_of = {}, {}, {}
    for kind in OURS:
        ranges, chosen = compute_ranges_chosen(stats, Method(kind))
        q = quantize_qdq(fp32, ranges)
        paths[f"ours.{kind}"] = p = work / f"int8_{kind}.onnx"
        onnx.save(q.model, str(p))
        facts[kind] = {"quantized_layers": len(q.quantized), "rule_violations": len(check_trt_qdq(q.model))}
        ranges_of[kind] = ranges
        if kind == "auto":
            quantized_inputs = set(q.activation_scales)
            long_tail = sorted(t for t, k in chosen.items() if k == "percentile" and t in quantized_inputs)
            by_op: dict[str, int] = {}
            for t in long_tail:
                by_op[prod.get(t, "?")] = by_op.get(prod.get(t, "?"), 0) + 1
            facts[kind].update({"quantized_inputs": len(quantized_inputs), "percentile_inputs": len(long_tail),
                                "percentile_inputs_by_producer": dict(sorted(by_op.items()))})
    return paths, {"facts": facts, "ranges": ranges_of}


def ort_candidates(onnx_path: Path, calib_dir: Path, pre, prof, work: Path) -> tuple[dict[str, Path], dict]:
    """ONNX Runtime's quantize_static (its own placement) per calibration method -> paths, errors."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from segdeploy.calibration.reader import iter_batches, open_calibration_set

    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    cset = open_calibration_set(calib_dir, channels=prof.channels, profile=prof, preprocess=pre)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(iter_batches(cset, pre, prof, 8))

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: b.array}

    paths, errors = {}, {}
    for m in ORT_METHODS:
        p = work / f"ort_{m}.onnx"
        try:
            from benchmarks._precision_common import stdout_to_stderr

            with stdout_to_stderr():
                quantize_static(str(onnx_path), str(p), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                                calibrate_method=getattr(CalibrationMethod, m),
                                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
            paths[f"ort.{m}"] = p
        except Exception as e:  # noqa: BLE001 - a peer's failure is a result, recorded
            errors[f"ort.{m}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return paths, errors


def fp16_candidate(fp32, absmax, work: Path) -> Path:
    import onnx

    from segdeploy.precision.fp16 import convert_fp16

    p = work / "fp16.onnx"
    onnx.save(convert_fp16(fp32, absmax).model, str(p))
    return p


def budget_run(model, fp32, ranges, val_ds, pre, prof, a: argparse.Namespace) -> dict:
    """search_budget from the default ranges: kept-in-float layers, evaluations, seconds."""
    from segdeploy.errors import GateError
    from segdeploy.precision.accuracy import Evaluator
    from segdeploy.precision.budget import search_budget

    with Evaluator(model, val_ds, preprocess=pre, profile=prof, num_classes=NUM_CLASSES, limit=a.budget_images) as ev:
        t0 = time.perf_counter()
        try:
            b = search_budget(fp32, ranges, ev, a.budget)
            doc = {"met": True, "initial_drop_points": round(b.drop if not b.excluded else b.initial_drop, 4),
                   "final_drop_points": round(b.drop, 4),
                   "kept_in_float": [{"layer": c.name, "op": c.op_type} for c in b.excluded],
                   "most_sensitive": [{"layer": c.name, "op": c.op_type, "points": round(c.sensitivity, 3)}
                                      for c in b.sensitivities[:3]]}
        except GateError as e:
            doc = {"met": False, "error": e.message}
        doc.update({"budget_points": a.budget, "images": ev.images, "evaluations": ev.evaluations,
                    "seconds": round(time.perf_counter() - t0, 1)})
    return doc


# --------------------------------------------------------------------------------------------------- a row


def measure_row(row: Row, a: argparse.Namespace, work: Path) -> dict:
    import onnx
    import torch

    from segdeploy.calibration import Method, calibrate
    from segdeploy.datasets import open_dataset
    from segdeploy.export import ExportOptions
    from segdeploy.manifest import onnx_profile_of, preprocess_of
    from segdeploy.pipeline import export_model
    from segdeploy.precision.accuracy import check_accuracy_many

    size = row.size or a.size
    torch.manual_seed(0)
    model = row.build()
    doc: dict = {"family": row.family, "transformer": row.transformer, "note": row.note}
    seconds = a.train_seconds * (a.transformer_time_factor if row.transformer else 1.0)
    doc["train"] = train(model, size, seconds, a)
    model.eval()
    calib_dir, val_dir = write_splits(work / "data", size, a.calib_images, a.val_images)
    t0 = time.perf_counter()
    res = export_model(model, work / "export", ExportOptions(shape=f"1x3x{size}x{size}", max_batch=8))
    doc["export"] = {"exporter": res.exporter, "seconds": round(time.perf_counter() - t0, 1)}
    pre, prof = preprocess_of(res.manifest), onnx_profile_of(res.manifest)
    t0 = time.perf_counter()
    cal = calibrate(res.onnx_path, calib_dir, preprocess=pre, profile=prof, method=Method())
    doc["calibration"] = {"images": cal.calib_set.size, "tensors": len(cal.ranges),
                          "seconds": round(time.perf_counter() - t0, 1)}
    fp32 = onnx.load(str(res.onnx_path))
    ours, extra = our_candidates(fp32, cal.statistics, work)
    doc["ours"] = extra["facts"]
    ort_paths, doc["ort_errors"] = ort_candidates(res.onnx_path, calib_dir, pre, prof, work)
    cands = {**ours, **ort_paths}
    try:
        cands = {"fp16": fp16_candidate(fp32, cal.absmax, work), **cands}
    except Exception as e:  # noqa: BLE001 - an FP16 conversion failure is a result; INT8 is still measured
        doc["fp16_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    val_ds = open_dataset(val_dir / "images", val_dir / "masks")
    reps = check_accuracy_many(cands, model, val_ds, preprocess=pre, profile=prof, num_classes=NUM_CLASSES,
                               levels=("disable",), batch_size=8)
    first = next(iter(reps.values()))
    doc["reference_miou_points"] = round(100 * first.reference_miou, 2)
    doc["val_images"] = first.images
    doc["drop_points"] = {k: round(r.drop, 4) for k, r in reps.items()}
    doc["budget"] = budget_run(model, fp32, extra["ranges"]["auto"], val_ds, pre, prof, a)
    return doc


def summary(doc: dict) -> dict:
    """Per row: trained (val mIoU >= chance + WELL_ABOVE_CHANCE), and the issue's bar for the default: it loses no
    more than the best of ONNX Runtime's methods + 0.05 points. A loss is a drop clipped at 0 (a negative drop is
    a gain, on 64 images within noise of 0), so a default that loses nothing meets the bar."""
    out = {}
    for name, row in doc["rows"].items():
        d = row.get("drop_points")
        if not d:
            continue
        ort = [d[k] for k in d if k.startswith("ort.")]
        best = min(ort) if ort else None
        t = row["train"]
        out[name] = {"trained": t["val_miou_points"] >= t["chance_miou_points"] + WELL_ABOVE_CHANCE,
                     "default": d.get("ours.auto"), "entropy_before": d.get("ours.entropy"), "best_ort": best,
                     "default_within_best_ort_plus_0.05":
                         None if best is None else max(d["ours.auto"], 0.0) <= max(best, 0.0) + 0.05}
    return out


COLUMNS = ("fp16", "ours.max", "ours.entropy", "ours.percentile", "ours.auto", "ort.MinMax", "ort.Entropy",
           "ort.Percentile")


def _budget_cell(b: dict | None) -> str:
    if not b:
        return "-"
    if not b.get("met"):
        return f"not met ({b.get('evaluations')} evals, {b.get('seconds')} s)"
    kept = b.get("kept_in_float") or []
    which = ", ".join(f"{k['op']} `{k['layer']}`" for k in kept) or "none"
    return f"{len(kept)}: {which} ({b['evaluations']} evals, {b['seconds']} s)"


def render_table(doc: dict) -> str:
    """The Markdown table of a result document: one line per row, drops in mIoU points."""
    doc = {**doc, "summary": summary(doc)}
    head = ["model", "val mIoU (chance)", *COLUMNS, "default <= best ORT + 0.05", "budget 0.5: kept in float"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in doc["rows"].items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'][:120]} |" + " |" * (len(head) - 2))
            continue
        t, d, s = row["train"], row["drop_points"], doc.get("summary", {}).get(name, {})
        trained = "" if s.get("trained") else " **not trained**"
        cells = [name, f"{t['val_miou_points']:.1f} ({t['chance_miou_points']:.1f}){trained}"]
        cells += [f"{d[c]:.2f}" if c in d else "-" for c in COLUMNS]
        ok = s.get("default_within_best_ort_plus_0.05")
        cells += ["-" if ok is None else ("yes" if ok else "**no**"), _budget_cell(row.get("budget"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="all", help="comma-separated row names (or 'all'); aliases: "
                    + ", ".join(f"{k}={v}" for k, v in ALIASES.items()))
    ap.add_argument("--tiny", action="store_true", help="CI: a few training steps on few images (structure only)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--train-images", type=int, default=384)
    ap.add_argument("--train-epochs", type=int, default=100, help="at most this many epochs")
    ap.add_argument("--train-seconds", type=float, default=180.0, help="training wall-time budget per row")
    ap.add_argument("--transformer-time-factor", type=float, default=2.0,
                    help="transformer rows train this many times --train-seconds")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--val-images", type=int, default=64)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--budget-images", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    ap.add_argument("--out", default=None, help="write the JSON here too (rewritten after every row)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already measured in --out (without an error) and run only the others")
    ap.add_argument("--table", metavar="JSON", default=None,
                    help="print the Markdown table of a result JSON (docs/precision_matrix.md) and exit")
    a = ap.parse_args(argv)
    if a.tiny:
        a.train_images, a.train_epochs, a.train_seconds, a.batch = 16, 1, 30.0, 8
        a.calib_images, a.val_images, a.budget_images = 8, 8, 4
    names = [r.name for r in ROWS] if a.rows == "all" else [ALIASES.get(n, n) for n in a.rows.split(",")]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown row(s) {', '.join(unknown)}; use one of {', '.join(BY_NAME)}")
    a.row_names = names
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.table:
        print(render_table(json.loads(Path(a.table).read_text())))
        return
    import onnxruntime
    import torch

    torch.set_num_threads(a.threads)
    doc = {"command": "python benchmarks/precision_matrix.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": {"cpu": platform.processor() or platform.machine(), "threads": a.threads,
                       "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "settings": {k: getattr(a, k) for k in ("size", "train_images", "train_epochs", "train_seconds",
                                                   "transformer_time_factor", "batch",
                                                   "lr", "calib_images", "val_images", "budget", "budget_images")},
           "evaluated_at": "ORT_DISABLE_ALL (Q/DQ emulated node by node), drop = PyTorch mIoU - candidate mIoU "
                           "against the masks, in points", "rows": {}}
    if a.resume and a.out and Path(a.out).is_file():
        old = json.loads(Path(a.out).read_text())
        doc["rows"] = {k: v for k, v in old.get("rows", {}).items() if "error" not in v}
    for name in a.row_names:
        if name in doc["rows"]:
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="segdeploy-pm-") as d:
            try:
                row = measure_row(BY_NAME[name], a, Path(d))
            except Exception as e:  # noqa: BLE001 - a failing row is a result; the matrix goes on
                row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                       "trace_tail": traceback.format_exc().splitlines()[-3:]}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        doc["rows"][name] = row
        doc["summary"] = summary(doc)
        print(json.dumps({name: row}), file=sys.stderr, flush=True)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
