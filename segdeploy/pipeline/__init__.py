"""The one-command path: export -> precision -> (build) in one transaction, published only if every stage passed.

``run_pipeline(source, out_dir, PipelineOptions(export=..., precision=..., build=...), progress, load_kwargs)``

Order (cheap preconditions before expensive stages):

1. option values (validated when the options objects are built) and the data folders (calibration images
   listed, validation split present: :func:`segdeploy.precision.stage.check_preconditions`);
2. the output directory: locked against concurrent writers, writable, not someone else's folder
   (:class:`~segdeploy.exportdir.Transaction`, ``fresh=True``);
3. load the model (refusing unsafe content) and settle the profile (:func:`segdeploy.export.prepare.prepare`:
   memory guard, PyTorch runs at the profile's extremes); then the validation labels against the model's class
   count, and (first thing in the export stage) the class-name count;
4. export + verify (:mod:`segdeploy.export.stage`), precision (:mod:`segdeploy.precision.stage`), build
   (:mod:`segdeploy.engine.stage`, when asked: engines where TensorRT is importable, else only the trtexec
   commands in the result), and after a build with a validation split the engines' parity against PyTorch
   (:func:`segdeploy.engine.verify.check_engines`: drift in each engine's manifest entry, ``max_miou_drop`` gates);
5. commit: the complete new set replaces the old one in one step. Any error, a tripped gate (exit 3), Ctrl-C
   or SIGKILL before that leaves the previous directory byte-identical.

Returns a :class:`PipelineResult`; every stage's ``summary()`` goes into the JSON result document. On
failure the exception carries ``.stages`` (what finished or measured before it stopped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from segdeploy.errors import SegdeployError

if TYPE_CHECKING:
    import torch

    from segdeploy.export.stage import ExportOptions, ExportResult
    from segdeploy.load import LoadedModel


@dataclass(frozen=True)
class PipelineOptions:
    export: Any  # segdeploy.export.ExportOptions
    precision: Any = None  # segdeploy.precision.stage.PrecisionOptions | None
    build: Any = None  # segdeploy.engine.stage.BuildRequest | None


@dataclass
class PipelineResult:
    export_dir: Any  # segdeploy.exportdir.ExportDir (published)
    export: Any  # ExportResult
    precision: Any = None
    build: Any = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def stages(self) -> dict[str, Any]:
        out = {"export": self.export.summary()}
        if self.precision is not None:
            out["precision"] = self.precision.summary()
        if self.build is not None:
            out["build"] = self.build.summary()
        return out


def run_pipeline(source: Any, out_dir: str | Path, options: PipelineOptions,
                 progress: Callable[[str], None] | None = None, load_kwargs: dict[str, Any] | None = None) -> PipelineResult:
    """Run the requested stages into ``out_dir`` and publish them together (see module docstring)."""
    from segdeploy.export import stage as export_stage
    from segdeploy.export.prepare import prepare
    from segdeploy.exportdir import Transaction
    from segdeploy.load import LoadedModel, load_model

    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    stages: dict[str, Any] = {}
    notes: list[str] = []
    popts, eopts = options.precision, options.export
    try:
        if popts is not None:
            from segdeploy.precision.stage import check_preconditions

            notes += check_preconditions(popts)
        if options.build is not None:
            options.build.check_static()
        with Transaction(out_dir, fresh=True, command="export", progress=say) as txn:
            say("load model")
            if isinstance(source, LoadedModel):
                lm = source
            else:
                lm = load_model(source, **(load_kwargs or {}))
            prep = prepare(lm, eopts.shape, eopts.min_shape, eopts.max_shape, eopts.spatial_multiple,
                           eopts.max_batch, say)
            if popts is not None:
                from segdeploy.precision.stage import check_labels

                check_labels(popts, prep.probe.spec.num_classes)
            exp = export_stage.run(txn, prep, eopts, say)  # checks the class-name count before exporting
            stages["export"] = exp.summary()
            prec = None
            if popts is not None:
                from segdeploy.precision import stage as precision_stage

                prec = precision_stage.run(txn, lm.module, popts, say)
                stages["precision"] = prec.summary()
            build = None
            if options.build is not None:
                from segdeploy.engine import stage as build_stage

                build = build_stage.run(txn, options.build, say)
                stages["build"] = build.summary()
                if build.built and popts is not None:
                    from segdeploy.engine.verify import check_engines

                    try:  # the engines vs PyTorch on the validation split; a tripped gate publishes nothing
                        check_engines(txn, build, lm.module, popts, say)
                    finally:
                        stages["build"] = build.summary()
            committed = txn.commit()
    except SegdeployError as e:
        e.stages = {**stages, **e.stages}  # what finished, plus what the failing stage measured
        raise
    exp.manifest = committed.manifest
    notes += txn.notes
    return PipelineResult(committed, exp, prec, build, notes, time.perf_counter() - t0)


def export_model(
    source: str | Path | torch.nn.Module | LoadedModel,
    out_dir: str | Path,
    options: ExportOptions | None = None,
    progress: Callable[[str], None] | None = None,
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
