"""`segdeploy check` and `segdeploy merge`: parse options, call the parity API, print, map the gate to exit 3.

Output: the terminal table on stdout (or the JSON document with ``--json``); ``--out`` writes the JSON
report atomically, ``--html`` the HTML report. The report is written *before* the gate is applied, so a
failed gate (exit 3) still leaves the evidence behind. Progress goes to stderr.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from segdeploy.errors import UsageError
from segdeploy.parity.gate import GateOptions, raise_for_gate


def _command_line() -> str:
    return "segdeploy " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"cannot parse --shard {text!r}; write I/N with 0 <= I < N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= I < N, e.g. 0/4 ... 3/4")
    return i, n


def _gate_options(f):
    f = click.option("--min-class-iou", type=float, default=None, metavar="PERCENT",
                     help="Fail when any present class has candidate IoU below PERCENT.")(f)
    f = click.option("--min-agreement", type=float, default=None, metavar="PERCENT",
                     help="Fail when pixel agreement (candidate == reference) is below PERCENT.")(f)
    f = click.option("--max-miou-drop", type=float, default=None, metavar="POINTS",
                     help="Fail (exit 3) when mIoU drops by more than POINTS percentage points.")(f)
    return f


def _emit(report: dict, out: str | None, html: str | None, as_json: bool) -> None:
    from segdeploy.parity.report_json import dumps, write_report
    from segdeploy.parity.terminal import format_report

    if out:
        write_report(out, report)
    if html:
        from segdeploy.parity.html_report import write_html_report

        write_html_report(report, html)
    if as_json:
        click.echo(dumps(report))
    else:
        click.echo(format_report(report))
        if out:
            click.echo(f"report: {out}")
        if html:
            click.echo(f"html: {html}")


@click.command("check")
@click.option("--reference", required=True, metavar="MODEL",
              help="PyTorch model file (.pt2, TorchScript, pkg.module:factory) or an .onnx reference.")
@click.option("--candidate", required=True, metavar="ARTIFACT", help="Deployed model: .onnx (ONNX Runtime) or .engine (TensorRT).")
@click.option("--data", required=True, type=click.Path(), help="Image folder (or VOC root with --layout voc).")
@click.option("--masks", type=click.Path(), default=None, help="Mask folder (matched by file stem). Omit: unlabelled mode.")
@click.option("--list", "list_file", type=click.Path(), default=None, help="List file naming the items (IMAGE [MASK] or STEM per line).")
@click.option("--layout", type=click.Choice(["folder", "voc"]), default="folder", show_default=True)
@click.option("--manifest", type=click.Path(), default=None, help="manifest.json from `segdeploy export` (default: beside the candidate).")
@click.option("--num-classes", type=int, default=None, help="Expected number of classes (checked).")
@click.option("--ignore-index", type=int, default=255, show_default=True, help="Mask value that is not a class.")
@click.option("--label-map", default=None, metavar="SPEC", help="Raw mask value -> class, e.g. '1:0,2:255' or a JSON file.")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Reference (torch) device.")
@click.option("--candidate-device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="ONNX Runtime execution provider for an .onnx candidate.")
@click.option("--ort-opt-level", type=click.Choice(["disable", "basic", "extended", "all"]), default="all", show_default=True,
              help="ONNX Runtime graph optimisation level (candidate).")
@click.option("--output", "output_sel", default=None, metavar="NAME|INDEX", help="Reference output selection override.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled reference module (runs its code).")
@_gate_options
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: stop at the first bad image; skip: record it in the report and go on.")
@click.option("--worst", "worst_k", type=int, default=8, show_default=True, help="How many worst images to keep.")
@click.option("--shard", default=None, metavar="I/N", help="Evaluate shard I of N (writes a partial result for `merge`).")
@click.option("--out", type=click.Path(), default=None, help="Write the JSON report here.")
@click.option("--html", type=click.Path(), default=None, help="Write the HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--task", type=click.Choice(["semantic", "instance"]), default="semantic", show_default=True,
              help="instance: Mask R-CNN-style outputs (boxes, labels, scores, masks), matched by mask IoU per class.")
@click.option("--iou-threshold", type=float, default=0.5, show_default=True, help="--task instance: mask IoU that matches two instances.")
@click.option("--min-recall", type=float, default=None, help="--task instance gate: min % of reference instances matched.")
@click.option("--min-precision", type=float, default=None, help="--task instance gate: min % of candidate instances matched.")
@click.option("--min-mask-iou", type=float, default=None, help="--task instance gate: min mean mask IoU (%) of matched pairs.")
@click.option("--max-score-drift", type=float, default=None, help="--task instance gate: max mean |score difference|.")
def check_command(reference, candidate, data, masks, list_file, layout, manifest, num_classes, ignore_index, label_map,
                  batch_size, device, candidate_device, ort_opt_level, output_sel, trust_pickle, max_miou_drop,
                  min_agreement, min_class_iou, on_error, worst_k, shard, out, html, as_json, progress,
                  task, iou_threshold, min_recall, min_precision, min_mask_iou, max_score_drift):
    """Compare a deployed model with its PyTorch reference on a dataset; gate on mIoU drift.

    With --masks: reference and candidate are scored against the masks (drift per metric and class).
    Without: the candidate is scored against the reference's predictions (agreement).
    Exit codes: 0 ok, 1 error, 2 usage error, 3 gate tripped (the report is written first).
    """
    from segdeploy.datasets import open_dataset
    from segdeploy.parity.check import CheckOptions, run_check
    from segdeploy.runners import guess_kind
    from segdeploy.runners.onnxruntime import OrtOptions
    from segdeploy.runners.torch import TorchOptions

    shard_t = _parse_shard(shard)
    if task == "instance":
        _check_instances(reference, candidate, data, masks, list_file, layout, device, trust_pickle, worst_k, shard_t,
                         out, html, as_json, iou_threshold, min_recall, min_precision, min_mask_iou, max_score_drift,
                         semantic_gate=(max_miou_drop, min_agreement, min_class_iou))
        return
    if any(v is not None for v in (min_recall, min_precision, min_mask_iou, max_score_drift)):
        raise UsageError("--min-recall/--min-precision/--min-mask-iou/--max-score-drift apply only with --task instance")
    if shard_t is not None and not out:
        raise UsageError("--shard needs --out PATH: a shard writes a partial result for `segdeploy merge`")
    if out:
        from segdeploy.fsutil import ensure_writable_dir

        ensure_writable_dir(Path(out).parent if str(Path(out).parent) else ".")
    gate = GateOptions(max_miou_drop, min_agreement, min_class_iou)
    ref_kind = guess_kind(reference)
    ref_opts = (TorchOptions(device=device, trust_pickle=trust_pickle, output=output_sel) if ref_kind == "torch"
                else OrtOptions() if ref_kind == "onnxruntime" else None)
    cand_kind = guess_kind(candidate)
    if cand_kind == "torch":
        raise UsageError(f"--candidate {candidate} is not a deployed artifact; give an .onnx or .engine file")
    cand_opts = OrtOptions(device=candidate_device, graph_optimization_level=ort_opt_level) if cand_kind == "onnxruntime" else None
    ds = open_dataset(data, masks, list_file=list_file, layout=layout, ignore_index=ignore_index, label_map=label_map)
    opts = CheckOptions(batch_size=batch_size, num_classes=num_classes, on_error=on_error, worst_k=worst_k, gate=gate,
                        shard=shard_t, reference_options=ref_opts, candidate_options=cand_opts)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    cb = None
    if show:
        bar = click.progressbar(length=len(ds) if shard_t is None else len(ds.subset(*shard_t)), label="checking",
                                file=sys.stderr)
        bar.__enter__()
        state = {"n": 0}

        def cb(done: int, total: int) -> None:
            bar.update(done - state["n"])
            state["n"] = done
    try:
        result = run_check(reference, candidate, ds, masks, manifest=manifest, options=opts, progress=cb,
                           command=_command_line())
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    result.report["dataset"]["images"] = str(data)
    _emit(result.report, out, html, as_json)
    raise_for_gate(result.gate)


def _check_instances(reference, candidate, data, masks, list_file, layout, device, trust_pickle, worst_k, shard_t, out,
                     html, as_json, iou_threshold, min_recall, min_precision, min_mask_iou, max_score_drift,
                     semantic_gate) -> None:
    """`check --task instance`: PyTorch detection model vs its ONNX export, matched per class by mask IoU."""
    from segdeploy.fsutil import atomic_write_json
    from segdeploy.parity.html_report import write_html_report
    from segdeploy.parity.instances import (InstanceGate, InstanceOptions, format_instance_report,
                                            raise_for_instance_gate, run_instance_check)
    from segdeploy.runners import guess_kind

    if shard_t is not None:
        raise UsageError("--shard is not supported with --task instance; run the whole set")
    if any(v is not None for v in semantic_gate):
        raise UsageError("--max-miou-drop/--min-agreement/--min-class-iou are semantic gates; with --task instance use "
                         "--min-recall/--min-precision/--min-mask-iou/--max-score-drift")
    if guess_kind(candidate) != "onnxruntime":
        raise UsageError(f"--task instance needs an .onnx candidate (ONNX Runtime), got {candidate}")
    rep = run_instance_check(reference, candidate, data, masks=masks, list_file=list_file, layout=layout,
                             trust_pickle=trust_pickle, device=device,
                             options=InstanceOptions(iou_threshold=iou_threshold, worst_k=worst_k),
                             gate=InstanceGate(min_recall, min_precision, min_mask_iou, max_score_drift),
                             command=_command_line())
    if out:
        atomic_write_json(out, rep)  # the instance schema (segdeploy.instance_report), not the semantic one
    if html:
        write_html_report(rep, html)
    click.echo(json.dumps(rep, indent=2, sort_keys=True) if as_json else format_instance_report(rep))
    raise_for_instance_gate(rep["gate"])


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="Write the merged JSON report here.")
@click.option("--html", type=click.Path(), default=None, help="Write the HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the merged JSON report instead of the table.")
@_gate_options
def merge_command(shards, out, html, as_json, max_miou_drop, min_agreement, min_class_iou):
    """Merge `segdeploy check --shard I/N` results exactly; gate the merged result (exit 3).

    Gate thresholds given here replace those recorded in the shards.
    """
    from segdeploy.parity.report_json import read_report
    from segdeploy.parity.shard import merge_reports

    partials = [read_report(p) for p in shards]
    given = GateOptions(max_miou_drop, min_agreement, min_class_iou)
    merged = merge_reports(partials, gate=given if given.active else None, command=_command_line())
    _emit(merged, out, html, as_json)
    from segdeploy.parity.gate import GateResult

    g = merged["gate"]
    raise_for_gate(GateResult(GateOptions.from_dict(g["thresholds"]), g["evaluated"], g["passed"], tuple(g["failures"])))
