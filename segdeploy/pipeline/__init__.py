"""The pipeline: the stage contract, running one stage on an existing directory, and the one-command path.

The stage contract
------------------
Every stage is a function ``run(txn, options, progress, **inputs) -> Result``:

* ``txn``: an open :class:`~segdeploy.exportdir.Transaction` (the owner of the directory: stages read the staged
  manifest through its typed accessors and write through ``write_bytes`` / ``add`` / ``set_section`` /
  ``put_engine``; they publish nothing -- the caller commits);
* ``options``: the stage's frozen, validated options object (:class:`~segdeploy.export.ExportOptions`,
  :class:`~segdeploy.calibration.stage.CalibrateOptions`, :class:`~segdeploy.precision.stage.PrecisionOptions`,
  the engine build request);
* ``progress``: the one :class:`~segdeploy.progress.Progress` (``progress.step`` lines, ``progress.task`` for
  counted loops);
* ``inputs``: keyword arguments that are not options -- the prepared model (export: ``prepared=``), the PyTorch
  reference (precision: ``reference=``);
* the result satisfies :class:`~segdeploy.result.StageResult` (``summary()`` for the JSON document, ``notes``).

:func:`run_stage` runs one stage on a published export directory (``segdeploy calibrate``, ``segdeploy
precision``, and ``segdeploy build`` through :func:`build_directory`): a derived transaction (``fresh=False``),
the stage, the commit -- the one way to do that.

The one-command path
--------------------
``run_pipeline(source, out_dir, PipelineOptions(export=..., precision=..., build=...), progress, load_kwargs)``:
export -> precision -> (build) in one transaction, published only if every stage passed. Order (cheap
preconditions before expensive stages):

1. option values (validated when the options objects are built) and the data folders (calibration images
   listed, validation split present: :func:`segdeploy.precision.stage.check_preconditions`);
2. the output directory: locked against concurrent writers, writable, not someone else's folder
   (:class:`~segdeploy.exportdir.Transaction`, ``fresh=True``);
3. load the model (refusing unsafe content) and settle the profile (:func:`segdeploy.export.prepare.prepare`:
   sized by the calibration/validation images when no --shape or example input decides (:func:`data_sizes`),
   memory guard, PyTorch runs at the profile's extremes); then the validation labels against the model's class
   count and (pad mode) the validation image sizes against the profile's max, and (first thing in the export
   stage) the class-name count;
4. export + verify (:mod:`segdeploy.export.stage`), precision (:mod:`segdeploy.precision.stage`), the end-to-end
   variants of every ONNX precision (``--end-to-end``: :mod:`segdeploy.export.e2e_stage`; its pad-preprocessing
   precondition is checked in step 1), build
   (:mod:`segdeploy.engine.stage`, when asked: engines where TensorRT is importable, else only the trtexec
   commands in the result), and after a build with a validation split the engines' parity against PyTorch
   (:func:`segdeploy.engine.verify.check_engines`: drift in each engine's manifest entry, ``max_miou_drop`` gates);
5. commit: the complete new set replaces the old one in one step. Any error, a tripped gate (exit 3), Ctrl-C
   or SIGKILL before that leaves the previous directory byte-identical.

Returns a :class:`PipelineResult`; every stage's ``summary()`` goes into the JSON result document. On
failure the exception's declared ``stages`` evidence holds what finished or measured before it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from segdeploy.errors import SegdeployError
from segdeploy.progress import Progress, as_progress
from segdeploy.result import StageResult

if TYPE_CHECKING:
    import torch

    from segdeploy.datasets.convention import DataSizes
    from segdeploy.engine.request import BuildRequest
    from segdeploy.engine.stage import BuildStageResult
    from segdeploy.export.stage import ExportOptions, ExportResult
    from segdeploy.export.e2e_stage import E2EOptions, E2EResult
    from segdeploy.exportdir import ExportDir, Transaction
    from segdeploy.load import LoadedModel
    from segdeploy.precision.stage import PrecisionOptions, PrecisionResult

OptionsT = TypeVar("OptionsT", contravariant=True)
ResultT = TypeVar("ResultT", bound=StageResult, covariant=True)


class StageRun(Protocol[OptionsT, ResultT]):
    """A stage's ``run`` (see the stage contract in the module docstring)."""

    def __call__(self, txn: Transaction, options: OptionsT, progress: Progress, **inputs: Any) -> ResultT: ...


def run_stage(export_dir: str | Path, stage_run: StageRun[OptionsT, ResultT], options: OptionsT, progress: Progress, *,
              command: str, **inputs: Any) -> tuple[ResultT, ExportDir]:
    """Run one stage on the published export directory ``export_dir`` and publish its outputs in one step.

    Opens a derived :class:`~segdeploy.exportdir.Transaction` (``fresh=False``: locked, staged from the current
    set), calls ``stage_run(txn, options, progress, **inputs)``, commits, and returns the stage's result (the
    transaction's notes appended to ``result.notes``) and the published :class:`~segdeploy.exportdir.ExportDir`.
    Any error leaves the directory as it was (the stage's evidence travels on the exception)."""
    from segdeploy.exportdir import Transaction

    with Transaction(export_dir, fresh=False, command=command, progress=progress) as txn:
        result = stage_run(txn, options, progress, **inputs)
        published = txn.commit()
    result.notes.extend(txn.notes)
    return result, published


def build_directory(export_dir: str | Path, options: BuildRequest, progress: Progress | None = None, *,
                    trt_module: Any = None) -> BuildStageResult:
    """`segdeploy build EXPORT_DIR`: the request's cheap checks, then without TensorRT the trtexec commands for the
    published directory (:func:`segdeploy.engine.stage.describe_directory`: read-only, nothing locked or written),
    with TensorRT (``import tensorrt``, or ``trt_module``) the build stage through :func:`run_stage`."""
    from segdeploy.engine import stage as build_stage
    from segdeploy.exportdir import ExportDir

    t0 = time.perf_counter()
    options.check_static()
    trt, why = (trt_module, None) if trt_module is not None else build_stage.import_tensorrt()
    if trt is None:
        return build_stage.describe_directory(ExportDir.open(export_dir), options, why)
    res, _ = run_stage(export_dir, build_stage.run, options, as_progress(progress), command="build", trt_module=trt)
    res.seconds = time.perf_counter() - t0
    return res


@dataclass(frozen=True)
class PipelineOptions:
    """What `segdeploy export` asks: the export, and optionally the precision stage and the engine build."""

    export: ExportOptions
    precision: PrecisionOptions | None = None
    build: BuildRequest | None = None
    end_to_end: E2EOptions | None = None  # --end-to-end: the variants after the precision stage, same transaction


@dataclass
class PipelineResult:
    """What a pipeline run published: the directory and each stage's result."""

    export_dir: ExportDir  # the published directory
    export: ExportResult
    precision: PrecisionResult | None = None
    build: BuildStageResult | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    end_to_end: E2EResult | None = None

    def stages(self) -> dict[str, Any]:
        out = {"export": self.export.summary()}
        if self.precision is not None:
            out["precision"] = self.precision.summary()
        if self.end_to_end is not None:
            out["end_to_end"] = self.end_to_end.summary()
        if self.build is not None:
            out["build"] = self.build.summary()
        return out


def _preconditions(options: PipelineOptions) -> list[str]:
    """Step 1: the cheap checks of the data folders and the build request; returns notes."""
    notes: list[str] = []
    if options.precision is not None:
        from segdeploy.precision.stage import check_preconditions

        notes += check_preconditions(options.precision)
    if options.build is not None:
        options.build.check_static()
    if options.end_to_end is not None:
        from segdeploy.errors import UsageError
        from segdeploy.export.e2e import preprocess_refusal

        reason = preprocess_refusal(options.export.preprocess)
        if reason:
            raise UsageError(reason)
    return notes


def _load(source: Any, load_kwargs: dict[str, Any] | None, progress: Progress) -> LoadedModel:
    from segdeploy.load import LoadedModel, load_model

    progress.step("load model")
    return source if isinstance(source, LoadedModel) else load_model(source, **(load_kwargs or {}))


def data_sizes(options: PipelineOptions) -> DataSizes | None:
    """The sizes of the calibration and validation images (headers only), which shape the profile; None without."""
    from segdeploy.datasets.convention import image_sizes

    popts = options.precision
    if popts is None:
        return None
    files: list[str] = []
    named: list[str] = []
    if popts.calib:
        from segdeploy.calibration.reader import list_images

        files += list_images(popts.calib)
        named.append(str(popts.calib))
    val_dir, _ = popts.validation_dir()
    if val_dir:
        from segdeploy.precision.stage import open_validation

        files += [e.image_path for e in open_validation(val_dir).entries]
        named.append(str(val_dir))
    return image_sizes(files, " and ".join(named)) if files else None


def _prepare(lm: LoadedModel, options: PipelineOptions, progress: Progress):
    """Step 3: settle the profile (PyTorch runs at its extremes, the data's sizes covered); check the validation
    labels against the classes."""
    from segdeploy.export.prepare import prepare

    eopts = options.export
    prep = prepare(lm, eopts.shape, eopts.min_shape, eopts.max_shape, eopts.spatial_multiple, eopts.max_batch, progress,
                   data=data_sizes(options), resize=eopts.preprocess.resize)
    if options.precision is not None:
        from segdeploy.precision.stage import check_labels, check_validation_fits

        check_labels(options.precision, prep.probe.spec.num_classes)
        check_validation_fits(options.precision, prep.profile, eopts.preprocess,
                              "pass a larger --max-shape (or leave it out: the data then sizes the profile) or "
                              "--resize resize")
    return prep


def _build(txn: Transaction, options: PipelineOptions, lm: LoadedModel, progress: Progress,
           stages: dict[str, Any]) -> BuildStageResult:
    """Step 4's build, then the engines' parity against PyTorch (a tripped gate publishes nothing)."""
    from segdeploy.engine import stage as build_stage

    build = build_stage.run(txn, options.build, progress)
    stages["build"] = build.summary()
    if build.built and options.precision is not None:
        from segdeploy.engine.verify import check_engines

        try:
            check_engines(txn, build, lm.module, options.precision, progress)
        finally:
            stages["build"] = build.summary()
    return build


def _run_stages(txn: Transaction, source: Any, options: PipelineOptions, progress: Progress,
                load_kwargs: dict[str, Any] | None,
                stages: dict[str, Any]) -> tuple[ExportResult, PrecisionResult | None, BuildStageResult | None,
                                                 E2EResult | None]:
    """Steps 3-4 inside the transaction; each finished stage's summary goes into ``stages`` (the evidence)."""
    from segdeploy.export import stage as export_stage

    lm = _load(source, load_kwargs, progress)
    prep = _prepare(lm, options, progress)
    exp = export_stage.run(txn, options.export, progress, prepared=prep)  # checks the class-name count first
    stages["export"] = exp.summary()
    prec = None
    if options.precision is not None:
        from segdeploy.precision import stage as precision_stage

        prec = precision_stage.run(txn, options.precision, progress, reference=lm.module, checked=True)
        stages["precision"] = prec.summary()
    e2e = None
    if options.end_to_end is not None:
        from segdeploy.export import e2e_stage

        e2e = e2e_stage.run(txn, options.end_to_end, progress, reference=lm.module)
        stages["end_to_end"] = e2e.summary()
    build = _build(txn, options, lm, progress, stages) if options.build is not None else None
    return exp, prec, build, e2e


def run_pipeline(source: Any, out_dir: str | Path, options: PipelineOptions,
                 progress: Progress | Callable[[str], None] | None = None,
                 load_kwargs: dict[str, Any] | None = None) -> PipelineResult:
    """Run the requested stages into ``out_dir`` and publish them together (see module docstring)."""
    from segdeploy.exportdir import Transaction

    progress = as_progress(progress)
    t0 = time.perf_counter()
    stages: dict[str, Any] = {}
    try:
        notes = _preconditions(options)
        with Transaction(out_dir, fresh=True, command="export", progress=progress) as txn:
            exp, prec, build, e2e = _run_stages(txn, source, options, progress, load_kwargs, stages)
            published = txn.commit()
    except SegdeployError as e:
        e.stages = {**stages, **e.stages}  # what finished, plus what the failing stage measured
        raise
    exp.manifest = published.manifest
    return PipelineResult(published, exp, prec, build, notes + txn.notes, time.perf_counter() - t0, e2e)


def default_out_dir(model_file: str | Path) -> Path:
    """`segdeploy export`'s default --out: ``<stem>.segdeploy/`` beside the model file."""
    p = Path(model_file)
    return p.parent / f"{p.stem}.segdeploy"


def export_model(
    source: str | Path | torch.nn.Module | LoadedModel,
    out_dir: str | Path,
    options: ExportOptions | None = None,
    progress: Progress | Callable[[str], None] | None = None,
    **load_kwargs: Any,
) -> ExportResult:
    """Export ``source`` to a verified ONNX + manifest published in ``out_dir`` (one transaction).

    ``source`` is a model path, a ``pkg.module:factory`` string, an nn.Module or a LoadedModel;
    ``load_kwargs`` go to :func:`segdeploy.load.load_model` (weights, trust_pickle, output, factory_kwargs).
    """
    from segdeploy.export.stage import ExportOptions

    res = run_pipeline(source, out_dir, PipelineOptions(export=options or ExportOptions()), progress=progress,
                       load_kwargs=load_kwargs)
    return res.export


__all__ = ["PipelineOptions", "PipelineResult", "StageRun", "build_directory", "data_sizes", "default_out_dir",
           "export_model", "run_pipeline", "run_stage"]
