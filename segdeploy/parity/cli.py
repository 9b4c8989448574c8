"""`segdeploy check` and `segdeploy merge`: parse options, call the parity API, print, map the gate to exit 3.

Output: the terminal table on stdout (or the JSON document with ``--json``); ``--out`` writes the JSON
report atomically, ``--html`` the HTML report. The report is written *before* the gate is applied, so a
failed gate (exit 3) still leaves the evidence behind. Progress goes to stderr.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from segdeploy.cli_options import (ModelArgs, dataset_options, gate_options, instance_gate_options, model_options,
                                   ort_options, output_options, progress_for)
from segdeploy.errors import GateError, SegdeployError, UsageError
from segdeploy.parity.gate import GateOptions, GateResult, raise_for_gate
from segdeploy.result import result_doc

if TYPE_CHECKING:
    from segdeploy.datasets import DatasetOptions
    from segdeploy.parity.check import CheckOptions
    from segdeploy.parity.instances import InstanceGate, InstanceOptions
    from segdeploy.progress import Progress
    from segdeploy.runners.onnxruntime import OrtOptions


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


@dataclass(frozen=True)
class CheckRequest:
    """`segdeploy check`'s option groups, parsed and cross-checked (every cheap precondition, before any model runs)."""

    model: ModelArgs
    candidate: str
    dataset: DatasetOptions
    manifest: str | None
    reports: tuple[str | None, str | None]  # --report, --html
    task: str
    options: CheckOptions  # the semantic check's (gate, shard, batch, ...; runners' options added by check_options)
    device: str  # the reference's torch device
    ort: OrtOptions  # an .onnx candidate's session
    plugin_library: str | None  # an .engine candidate's
    instance: InstanceOptions
    instance_gate: InstanceGate

    def validate(self) -> "CheckRequest":
        """Raise UsageError for option values that cannot work together (see the checks below)."""
        from segdeploy.runners import guess_kind

        self.model.validate()
        out, html = self.reports
        _check_report_paths(out, html)
        _guard_check_outputs(out, html, candidate=self.candidate, model=self.model, manifest=self.manifest,
                             list_file=self.dataset.list_file)
        kind = guess_kind(self.candidate)
        if self.plugin_library is not None and self.task == "instance":
            raise UsageError("--plugins is not supported with --task instance yet; run the instance check without it")
        if self.plugin_library is not None and kind != "tensorrt":
            raise UsageError(f"--plugins applies to a TensorRT engine candidate, not {self.candidate}; drop it")
        if self.task == "instance":
            return self._validate_instance(kind)
        if self.instance_gate.active:
            raise UsageError("--min-recall/--min-precision/--min-mask-iou/--max-score-drift apply only with --task instance")
        if self.options.shard is not None and not out:
            raise UsageError("--shard needs --report FILE: a shard writes a partial result for `segdeploy merge`")
        if kind == "torch":
            raise UsageError(f"--candidate {self.candidate} is not a deployed artifact; give an .onnx or .engine file")
        return self

    def _validate_instance(self, kind: str) -> "CheckRequest":
        if self.options.shard is not None:
            raise UsageError("--shard is not supported with --task instance; run the whole set")
        if self.options.gate.active:
            raise UsageError("--max-miou-drop/--min-agreement/--min-class-iou are semantic gates; with --task instance "
                             "use --min-recall/--min-precision/--min-mask-iou/--max-score-drift")
        if kind == "torch":
            raise UsageError(f"--task instance needs a deployed candidate (.onnx or .engine), got {self.candidate}")
        return self

    def check_options(self, reference: Any) -> CheckOptions:
        """The parity check's options: runners' options for ``reference`` (loaded model or file) and the candidate."""
        from segdeploy.runners import guess_kind
        from segdeploy.runners.onnxruntime import OrtOptions
        from segdeploy.runners.torch import TorchOptions

        ref_kind = guess_kind(reference)
        ref_opts = (TorchOptions(device=self.device, trust_pickle=self.model.trust_pickle, output=self.model.output)
                    if ref_kind == "torch" else OrtOptions() if ref_kind == "onnxruntime" else None)
        cand_kind = guess_kind(self.candidate)
        cand_opts: Any = self.ort if cand_kind == "onnxruntime" else None
        if cand_kind == "tensorrt":
            from segdeploy.plugins.locate import library_for_engine
            from segdeploy.runners.tensorrt import TensorRTOptions

            cand_opts = TensorRTOptions(plugin_library=library_for_engine(self.candidate, self.plugin_library, self.manifest))
        return replace(self.options, reference_options=ref_opts, candidate_options=cand_opts)


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
@dataset_options
@click.option("--manifest", type=click.Path(), default=None, help="manifest.json from `segdeploy export` (default: beside the candidate).")
@click.option("--num-classes", type=int, default=None, help="Expected number of classes (checked).")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Reference (torch) device.")
@ort_options
@click.option("--plugins", "plugin_library", type=click.Path(dir_okay=False), default=None,
              help="segdeploy's TensorRT plugin library for an .engine candidate (default: when the manifest beside "
                   "the engine says it needs one, the `segdeploy plugins build` output).")
@gate_options
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
@instance_gate_options
def check_command(model, candidate, dataset, manifest, num_classes, batch_size, device, ort, plugin_library, gate,
                  on_error, worst_k, shard, out, html, as_json, quiet, task, iou_threshold, instance_gate):
    """Compare a deployed model with its PyTorch reference on a dataset; gate on mIoU drift.

    With --masks: reference and candidate are scored against the masks (drift per metric and class).
    Without: the candidate is scored against the reference's predictions (agreement).
    Exit codes: 0 ok, 1 error, 2 usage error, 3 gate tripped (the report is written first).
    """
    from segdeploy.parity.check import CheckOptions
    from segdeploy.parity.instances import InstanceOptions

    try:
        options = CheckOptions(batch_size=batch_size, num_classes=num_classes, on_error=on_error, worst_k=worst_k,
                               gate=gate, shard=_parse_shard(shard))
        request = CheckRequest(model, candidate, dataset, manifest, (out, html), task, options, device, ort,
                               plugin_library, InstanceOptions(iou_threshold=iou_threshold, worst_k=worst_k),
                               instance_gate).validate()
        if task == "instance":
            _check_instances(request, as_json)
        else:
            _check_semantic(request, as_json, progress_for(quiet))
    except SegdeployError as e:
        if as_json and not e.reported:
            from segdeploy.result import echo_json

            echo_json(result_doc("check", error=e))
        raise


def _reference(model: ModelArgs) -> Any:
    """The reference the runners take: a factory's loaded module, else the model file itself."""
    return model.load().raw if model.factory else model.file


def _check_semantic(request: CheckRequest, as_json: bool, progress: Progress) -> None:
    """Run the parity check, write the reports, then apply the gate (exit 3 after the evidence is written)."""
    from segdeploy.parity.check import run_check

    if request.model.factory:
        progress.step(f"check: building the reference, {request.model.factory}")
    reference = _reference(request.model)
    opts = request.check_options(reference)
    ds = request.dataset.open()
    result = run_check(reference, request.candidate, ds, request.dataset.masks, manifest=request.manifest,
                       options=opts, progress=progress, command=_command_line())
    result.report["dataset"]["images"] = str(request.dataset.images)
    _finish("check", result.report, result.gate, request.reports, as_json)


def _finish(command: str, report: dict, gate: GateResult, reports: tuple[str | None, str | None], as_json: bool) -> None:
    """Write and print the report, then raise the gate's error (marked as already in the JSON document)."""
    err = None
    try:
        raise_for_gate(gate)
    except GateError as e:
        err = e
        e.reported = True
    _emit(command, report, reports[0], reports[1], as_json, error=err)
    if err is not None:
        raise err


def _check_instances(request: CheckRequest, as_json: bool) -> None:
    """`check --task instance`: PyTorch detection model vs its ONNX export, matched per class by mask IoU."""
    from segdeploy.fsutil import atomic_write_json
    from segdeploy.parity.html_report import write_html_report
    from segdeploy.parity.instances import format_instance_report, raise_for_instance_gate, run_instance_check

    ds, (out, html) = request.dataset, request.reports
    rep = run_instance_check(_reference(request.model), request.candidate, ds.images, masks=ds.masks,
                             list_file=ds.list_file, layout=ds.layout, trust_pickle=request.model.trust_pickle,
                             device=request.device, options=request.instance, gate=request.instance_gate,
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
@gate_options
def merge_command(shards, out, html, as_json, quiet, gate):
    """Merge `segdeploy check --shard I/N` results exactly; gate the merged result (exit 3).

    Gate thresholds given here replace those recorded in the shards. Shards of different datasets, checks or
    shard counts, and missing or repeated shards, are refused (exit 1; with --json the document says why).
    """
    from segdeploy.exportdir import guard_outputs
    from segdeploy.parity.shard import merge_reports, read_shard

    _check_report_paths(out, html)
    guard_outputs([("--report", out), ("--html", html)], [("a shard", p) for p in shards])
    partials = [read_shard(p) for p in shards]  # bounded parse + the checks merge relies on, naming the file
    merged = merge_reports(partials, gate=gate if gate.active else None, command=_command_line(), sources=list(shards))
    g = merged["gate"]
    result = GateResult(GateOptions.from_dict(g["thresholds"]), g["evaluated"], g["passed"], tuple(g["failures"]))
    err = None
    try:
        raise_for_gate(result)
    except GateError as e:
        err = e
    _emit("merge", merged, out, html, as_json, error=err)
    if err is not None:
        raise err
