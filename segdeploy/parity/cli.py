"""`segdeploy check` and `segdeploy merge`: parse options, call the parity API, print, map the gate to exit 3.

Output: the terminal table on stdout (or the JSON document with ``--json``); ``--out`` writes the JSON
report atomically, ``--html`` the HTML report. The report is written *before* the gate is applied, so a
failed gate (exit 3) still leaves the evidence behind. Progress goes to stderr.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from segdeploy.cli_options import model_options, output_options
from segdeploy.errors import SegdeployError, UsageError
from segdeploy.parity.gate import GateOptions, raise_for_gate
from segdeploy.result import result_doc
from segdeploy.vocab import DEFAULT_CHECK_ORT_LEVEL, OrtLevel


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


def _check_report_paths(report: str | None, html: str | None) -> None:
    """Cheap precondition: the report files' directories exist and are writable (before any model runs)."""
    import os

    for opt, path in (("--report", report), ("--html", html)):
        if not path:
            continue
        parent = Path(path).parent if str(Path(path).parent) else Path(".")
        if Path(path).is_dir():
            raise UsageError(f"{opt} {path} is a directory; give a file name, e.g. {opt} {Path(path) / 'report'}"
                             f"{'.json' if opt == '--report' else '.html'}")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UsageError(f"{opt} {path}: directory {parent} does not exist or is not writable; choose another {opt}")


def _guard_check_outputs(out: str | None, html: str | None, *, candidate, model, manifest, list_file) -> None:
    """`check` refuses, before any model runs, a --report/--html that would overwrite one of its inputs or an
    artifact of an export directory (the one decision: :func:`segdeploy.exportdir.guard_outputs`)."""
    from segdeploy.exportdir import guard_outputs

    guard_outputs([("--report", out), ("--html", html)],
                  [("the candidate", candidate), ("the reference model", model.file), ("the model weights", model.weights),
                   ("the manifest", manifest), ("the list file", list_file)])


def _emit(command: str, report: dict, out: str | None, html: str | None, as_json: bool, error=None) -> None:
    from segdeploy.parity.report_json import write_report
    from segdeploy.parity.terminal import format_report

    if out:
        write_report(out, report)
    if html:
        from segdeploy.parity.html_report import write_html_report

        write_html_report(report, html)
    if as_json:
        from segdeploy.result import echo_json

        echo_json(result_doc(command, stages={"check": report}, error=error))
    else:
        click.echo(format_report(report))
        if out:
            click.echo(f"report: {out}")
        if html:
            click.echo(f"html: {html}")


@click.command("check")
@model_options(reference=True)
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
@click.option("--ort-opt-level", type=click.Choice(OrtLevel.values()), default=DEFAULT_CHECK_ORT_LEVEL.value, show_default=True,
              help="ONNX Runtime graph optimisation level (candidate).")
@click.option("--plugins", "plugin_library", type=click.Path(dir_okay=False), default=None,
              help="segdeploy's TensorRT plugin library for an .engine candidate (default: when the manifest beside "
                   "the engine says it needs one, the `segdeploy plugins build` output).")
@_gate_options
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: stop at the first bad image; skip: record it in the report and go on.")
@click.option("--worst", "worst_k", type=int, default=8, show_default=True, help="How many worst images to keep.")
@click.option("--shard", default=None, metavar="I/N", help="Evaluate shard I of N (writes a partial result for `merge`).")
@click.option("--report", "out", type=click.Path(), default=None, help="Write the JSON report to this file.")
@click.option("--html", type=click.Path(), default=None, help="Write the HTML report to this file.")
@output_options
@click.option("--task", type=click.Choice(["semantic", "instance"]), default="semantic", show_default=True,
              help="instance: Mask R-CNN-style outputs (boxes, labels, scores, masks), matched by mask IoU per class.")
@click.option("--iou-threshold", type=float, default=0.5, show_default=True, help="--task instance: mask IoU that matches two instances.")
@click.option("--min-recall", type=float, default=None, help="--task instance gate: min % of reference instances matched.")
@click.option("--min-precision", type=float, default=None, help="--task instance gate: min % of candidate instances matched.")
@click.option("--min-mask-iou", type=float, default=None, help="--task instance gate: min mean mask IoU (%) of matched pairs.")
@click.option("--max-score-drift", type=float, default=None, help="--task instance gate: max mean |score difference|.")
def check_command(model, candidate, data, masks, list_file, layout, manifest, num_classes, ignore_index, label_map,
                  batch_size, device, candidate_device, ort_opt_level, plugin_library, max_miou_drop,
                  min_agreement, min_class_iou, on_error, worst_k, shard, out, html, as_json, quiet,
                  task, iou_threshold, min_recall, min_precision, min_mask_iou, max_score_drift):
    """Compare a deployed model with its PyTorch reference on a dataset; gate on mIoU drift.

    With --masks: reference and candidate are scored against the masks (drift per metric and class).
    Without: the candidate is scored against the reference's predictions (agreement).
    Exit codes: 0 ok, 1 error, 2 usage error, 3 gate tripped (the report is written first).
    """

    try:
        _run_check_command(model, candidate, data, masks, list_file, layout, manifest, num_classes, ignore_index,
                           label_map, batch_size, device, candidate_device, ort_opt_level, max_miou_drop, min_agreement,
                           min_class_iou, on_error, worst_k, shard, out, html, as_json, quiet, task, iou_threshold,
                           min_recall, min_precision, min_mask_iou, max_score_drift, plugin_library)
    except SegdeployError as e:
        if as_json and not e.reported:
            from segdeploy.result import echo_json

            echo_json(result_doc("check", error=e))
        raise


def _run_check_command(model, candidate, data, masks, list_file, layout, manifest, num_classes, ignore_index, label_map,
                       batch_size, device, candidate_device, ort_opt_level, max_miou_drop, min_agreement, min_class_iou,
                       on_error, worst_k, shard, out, html, as_json, quiet, task, iou_threshold, min_recall,
                       min_precision, min_mask_iou, max_score_drift, plugin_library=None) -> None:
    from segdeploy.datasets import open_dataset
    from segdeploy.errors import GateError
    from segdeploy.parity.check import CheckOptions, run_check
    from segdeploy.runners import guess_kind
    from segdeploy.runners.onnxruntime import OrtOptions
    from segdeploy.runners.torch import TorchOptions

    model.validate()
    shard_t = _parse_shard(shard)
    _check_report_paths(out, html)
    _guard_check_outputs(out, html, candidate=candidate, model=model, manifest=manifest, list_file=list_file)
    if plugin_library is not None and task == "instance":
        raise UsageError("--plugins is not supported with --task instance yet; run the instance check without it")
    if plugin_library is not None and guess_kind(candidate) != "tensorrt":
        raise UsageError(f"--plugins applies to a TensorRT engine candidate, not {candidate}; drop it")
    reference = model.load().raw if model.factory else model.file
    if task == "instance":
        _check_instances(reference, candidate, data, masks, list_file, layout, device, model.trust_pickle, worst_k,
                         shard_t, out, html, as_json, iou_threshold, min_recall, min_precision, min_mask_iou,
                         max_score_drift, semantic_gate=(max_miou_drop, min_agreement, min_class_iou))
        return
    if any(v is not None for v in (min_recall, min_precision, min_mask_iou, max_score_drift)):
        raise UsageError("--min-recall/--min-precision/--min-mask-iou/--max-score-drift apply only with --task instance")
    if shard_t is not None and not out:
        raise UsageError("--shard needs --report FILE: a shard writes a partial result for `segdeploy merge`")
    gate = GateOptions(max_miou_drop, min_agreement, min_class_iou)
    ref_kind = guess_kind(reference)
    ref_opts = (TorchOptions(device=device, trust_pickle=model.trust_pickle, output=model.output) if ref_kind == "torch"
                else OrtOptions() if ref_kind == "onnxruntime" else None)
    cand_kind = guess_kind(candidate)
    if cand_kind == "torch":
        raise UsageError(f"--candidate {candidate} is not a deployed artifact; give an .onnx or .engine file")
    cand_opts = OrtOptions(device=candidate_device, graph_optimization_level=ort_opt_level) if cand_kind == "onnxruntime" else None
    if cand_kind == "tensorrt":
        from segdeploy.engine.request import engine_plugin_library
        from segdeploy.runners.tensorrt import TensorRTOptions

        cand_opts = TensorRTOptions(plugin_library=engine_plugin_library(candidate, plugin_library, manifest))
    ds = open_dataset(data, masks, list_file=list_file, layout=layout, ignore_index=ignore_index, label_map=label_map)
    opts = CheckOptions(batch_size=batch_size, num_classes=num_classes, on_error=on_error, worst_k=worst_k, gate=gate,
                        shard=shard_t, reference_options=ref_opts, candidate_options=cand_opts)
    bar = None
    cb = None
    if not quiet and not as_json and sys.stderr.isatty():
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
    err = None
    try:
        raise_for_gate(result.gate)
    except GateError as e:
        err = e
        e.reported = True
    _emit("check", result.report, out, html, as_json, error=err)
    if err is not None:
        raise err


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
    if guess_kind(candidate) == "torch":
        raise UsageError(f"--task instance needs a deployed candidate (.onnx or .engine), got {candidate}")
    rep = run_instance_check(reference, candidate, data, masks=masks, list_file=list_file, layout=layout,
                             trust_pickle=trust_pickle, device=device,
                             options=InstanceOptions(iou_threshold=iou_threshold, worst_k=worst_k),
                             gate=InstanceGate(min_recall, min_precision, min_mask_iou, max_score_drift),
                             command=_command_line())
    if out:
        atomic_write_json(out, rep)  # the instance schema (segdeploy.instance_report), not the semantic one
    if html:
        write_html_report(rep, html)
    err = None
    try:
        raise_for_instance_gate(rep["gate"])
    except SegdeployError as e:
        err = e
        e.reported = True
    if as_json:
        from segdeploy.result import echo_json

        echo_json(result_doc("check", stages={"check": rep}, error=err))
    else:
        click.echo(format_instance_report(rep))
    if err is not None:
        raise err


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path())
@click.option("--report", "out", type=click.Path(), default=None, help="Write the merged JSON report to this file.")
@click.option("--html", type=click.Path(), default=None, help="Write the HTML report to this file.")
@output_options
@_gate_options
def merge_command(shards, out, html, as_json, quiet, max_miou_drop, min_agreement, min_class_iou):
    """Merge `segdeploy check --shard I/N` results exactly; gate the merged result (exit 3).

    Gate thresholds given here replace those recorded in the shards. Shards of different datasets, checks or
    shard counts, and missing or repeated shards, are refused (exit 1; with --json the document says why).
    """
    from segdeploy.errors import GateError
    from segdeploy.parity.gate import GateResult
    from segdeploy.parity.shard import merge_reports, read_shard

    from segdeploy.exportdir import guard_outputs

    _check_report_paths(out, html)
    guard_outputs([("--report", out), ("--html", html)], [("a shard", p) for p in shards])
    partials = [read_shard(p) for p in shards]  # bounded parse + the checks merge relies on, naming the file
    given = GateOptions(max_miou_drop, min_agreement, min_class_iou)
    merged = merge_reports(partials, gate=given if given.active else None, command=_command_line(),
                           sources=list(shards))
    g = merged["gate"]
    err = None
    try:
        raise_for_gate(GateResult(GateOptions.from_dict(g["thresholds"]), g["evaluated"], g["passed"], tuple(g["failures"])))
    except GateError as e:
        err = e
    _emit("merge", merged, out, html, as_json, error=err)
    if err is not None:
        raise err
