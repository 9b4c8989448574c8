"""Option groups shared by the commands (like Polygraphy's argument groups), so the same option means the same
thing everywhere. Each group is a decorator that adds its options to a click command and hands the command ONE
value for the group, parsed into its frozen options object.

Groups that parse at once (a bad value is a usage error, exit 2, before the command body runs):

* :func:`gate_options` -- ``--max-miou-drop POINTS``, ``--min-agreement PERCENT``, ``--min-class-iou PERCENT``
  -> ``gate``: :class:`segdeploy.parity.gate.GateOptions` (check, merge).
* :func:`dataset_options` -- ``--data``, ``--masks``, ``--list``, ``--layout``, ``--ignore-index``, ``--label-map``
  -> ``dataset``: :class:`segdeploy.datasets.DatasetOptions` (check).
* :func:`ort_options` -- ``--candidate-device``, ``--ort-opt-level`` -> ``ort``:
  :class:`segdeploy.runners.onnxruntime.OrtOptions` (check's ONNX candidate).
* :func:`instance_gate_options` -- ``--min-recall``, ``--min-precision``, ``--min-mask-iou``, ``--max-score-drift``
  -> ``instance_gate``: :class:`segdeploy.parity.instances.InstanceGate` (check --task instance).

Groups whose values the command parses itself, inside its own error handling (``--json`` documents then name
the directory the command was working on), each a frozen ``*Args`` with ``parse()``:

* :func:`model_options` -- where the PyTorch model comes from: ``MODEL_FILE`` (or ``--reference`` on
  `check`) | ``--model PKG.MODULE:FACTORY`` ``--model-arg K=V`` ``--weights FILE``; ``--trust-pickle``;
  ``--output NAME|INDEX`` -> ``model``: :class:`ModelArgs` (``validate()``, ``load()``).
* :func:`precision_options` -- ``--int8 --fp16 --calib --calib-size --calib-method --percentile --seed --val
  --max-miou-drop --exclude-layer --budget-images --require-check --trt-target`` -> ``precision``: :class:`PrecisionArgs`
  (``parse()`` -> :class:`segdeploy.precision.stage.PrecisionOptions`, or None without --int8/--fp16) (export,
  precision).
* :func:`calibration_options` -- ``--calib --calib-size --seed --calib-method --percentile --calib-gray
  --batch-size --cache-dir --no-cache --trt-target`` -> ``calibration``: :class:`CalibrationArgs` (``parse()`` ->
  :class:`segdeploy.calibration.stage.CalibrateOptions`) (calibrate).

The calibration-set options both calibration groups share (``--calib-size --seed --calib-method --percentile
--trt-target``) are defined once (:data:`_CALIBRATION_SET`). ``--trt-target`` is the one option naming the target
TensorRT on every command (:mod:`segdeploy.trt.cli_options`); the old name ``--trt-version`` is a hidden alias that
prints a one-line deprecation note (both given: a usage error).

* :func:`e2e_options` -- ``--end-to-end --class-dtype --with-scores --frame-order`` -> ``e2e``: :class:`E2EArgs`
  (``parse()`` -> :class:`segdeploy.export.e2e_stage.E2EOptions`, or None without --end-to-end) (export, precision).
* :func:`output_options` -- ``--json`` (one JSON result document on stdout, :mod:`segdeploy.result`, printed
  for failures and tripped gates too) and ``-q/--quiet`` (no progress on stderr). The command receives
  ``as_json`` and ``quiet``; :func:`progress_for` is the :class:`~segdeploy.progress.Progress` ``-q`` asks for.

Naming rules: ``--out DIR`` is always a directory segdeploy owns (export, bundle); ``--report FILE`` is always
a JSON report file and ``--html FILE`` an HTML report file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import click

from segdeploy.errors import UsageError
from segdeploy.progress import Progress
from segdeploy.trt.cli_options import LEGACY, OPTION, TARGET_HELP, resolve_alias
from segdeploy.vocab import DEFAULT_CALIB_METHOD, DEFAULT_CHECK_ORT_LEVEL, DEFAULT_PERCENTILE, CalibMethod, OrtLevel

if TYPE_CHECKING:
    from segdeploy.calibration.stage import CalibrateOptions
    from segdeploy.export.e2e_stage import E2EOptions
    from segdeploy.precision.stage import PrecisionOptions


def parse_model_args(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> kwargs; VALUE is int, float, true/false, none, else the string itself."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--model-arg {item!r} must be KEY=VALUE with KEY a Python identifier")
        v: object = val
        low = val.lower()
        if low in ("true", "false"):
            v = low == "true"
        elif low in ("none", "null"):
            v = None
        else:
            for conv in (int, float):
                try:
                    v = conv(val)
                    break
                except ValueError:
                    pass
        out[key.strip()] = v
    return out


@dataclass(frozen=True)
class ModelArgs:
    """The model group's values; :meth:`validate` checks them (cheap), :meth:`load` loads the model."""

    file: str | None
    factory: str | None
    model_args: tuple[str, ...]
    weights: str | None
    trust_pickle: bool
    output: str | None
    file_option: str = "MODEL_FILE"

    def validate(self) -> "ModelArgs":
        if (self.file is None) == (self.factory is None):
            raise UsageError(f"give exactly one of {self.file_option} or --model PKG.MODULE:FACTORY")
        if self.model_args and self.factory is None:
            raise UsageError("--model-arg applies only with --model PKG.MODULE:FACTORY")
        if self.weights is not None and self.factory is None:
            raise UsageError(f"--weights applies only with --model PKG.MODULE:FACTORY; a {self.file_option} carries its "
                             "own weights")
        parse_model_args(self.model_args)
        return self

    @property
    def source(self) -> str:
        return self.factory if self.factory is not None else self.file

    def load_kwargs(self) -> dict[str, Any]:
        return {"factory": self.factory, "weights": self.weights, "trust_pickle": self.trust_pickle,
                "output": self.output, "factory_kwargs": parse_model_args(self.model_args)}

    def load(self):
        from segdeploy.load import load_model

        return load_model(None if self.factory else self.file, **self.load_kwargs())


def model_options(reference: bool = False):
    """Decorator: the model group. ``reference=True`` (check) names the file option ``--reference``."""

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            file = kwargs.pop("reference" if reference else "model_file")
            m = ModelArgs(file, kwargs.pop("factory"), tuple(kwargs.pop("model_args")), kwargs.pop("weights"),
                          kwargs.pop("trust_pickle"), kwargs.pop("output_sel"),
                          "--reference" if reference else "MODEL_FILE")
            return f(*args, model=m, **kwargs)

        opts = [
            click.option("--model", "factory", metavar="PKG.MODULE:FACTORY",
                         help="Importable factory returning an nn.Module (instead of "
                              f"{'--reference' if reference else 'MODEL_FILE'})."),
            click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
                         help="Keyword argument for --model's factory (repeatable; int/float/bool/None, else string)."),
            click.option("--weights", type=click.Path(dir_okay=False, path_type=str),
                         help="State dict (.pt/.pth, loaded weights-only) or .safetensors for --model."),
            click.option("--trust-pickle", is_flag=True,
                         help="Allow pickled content (torch.save(model), pickled .pt2 entries): unpickling runs code."),
            click.option("--output", "output_sel", metavar="NAME|INDEX",
                         help="Which model output is the score map (dict key or tuple index)."),
        ]
        if reference:
            opts.insert(0, click.option("--reference", metavar="MODEL",
                                        help="Reference model: .pt2, TorchScript, pickled module (with --trust-pickle) "
                                             "or an .onnx file."))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        if not reference:
            wrapper = click.argument("model_file", required=False, type=click.Path(dir_okay=False, path_type=str))(wrapper)
        return wrapper

    return deco


def output_options(f):
    """Decorator: ``--json`` and ``-q/--quiet``."""
    f = click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")(f)
    f = click.option("--json", "as_json", is_flag=True,
                     help="Print the JSON result document on stdout (also on failure and tripped gates).")(f)
    return f


def progress_for(quiet: bool) -> Progress:
    """The progress a command shows: step lines and counted tasks on stderr (a bar on a terminal), none with
    ``-q``. ``--json`` changes stdout only (the document), so a pipeline's log still shows where a run is."""
    return Progress(not quiet)


# ------------------------------------------------------------------------------------------- building groups


def _group(keyword: str, names: tuple[str, ...], options: list[Callable[[Any], Any]], make: Callable[..., Any]):
    """A decorator adding ``options`` (click parameters called ``names``) and passing ``make(**their values)`` to the
    command as ``keyword``."""

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            values = {n: kwargs.pop(n) for n in names}
            return f(*args, **{keyword: make(**values)}, **kwargs)

        for opt in reversed(options):
            wrapper = opt(wrapper)
        return wrapper

    return deco


# ------------------------------------------------------------------------------------------- gate


def _gate(max_miou_drop, min_agreement, min_class_iou):
    from segdeploy.parity.gate import GateOptions

    return GateOptions(max_miou_drop, min_agreement, min_class_iou)


gate_options = _group("gate", ("max_miou_drop", "min_agreement", "min_class_iou"), [
    click.option("--max-miou-drop", type=float, default=None, metavar="POINTS",
                 help="Fail (exit 3) when mIoU drops by more than POINTS percentage points."),
    click.option("--min-agreement", type=float, default=None, metavar="PERCENT",
                 help="Fail when pixel agreement (candidate == reference) is below PERCENT."),
    click.option("--min-class-iou", type=float, default=None, metavar="PERCENT",
                 help="Fail when any present class has candidate IoU below PERCENT."),
], _gate)
"""Decorator: the semantic accuracy gate -> ``gate`` (:class:`~segdeploy.parity.gate.GateOptions`)."""


def _instance_gate(min_recall, min_precision, min_mask_iou, max_score_drift):
    from segdeploy.parity.instances.gate import InstanceGate

    return InstanceGate(min_recall, min_precision, min_mask_iou, max_score_drift)


instance_gate_options = _group("instance_gate", ("min_recall", "min_precision", "min_mask_iou", "max_score_drift"), [
    click.option("--min-recall", type=float, default=None, help="--task instance gate: min % of reference instances matched."),
    click.option("--min-precision", type=float, default=None, help="--task instance gate: min % of candidate instances matched."),
    click.option("--min-mask-iou", type=float, default=None, help="--task instance gate: min mean mask IoU (%) of matched pairs."),
    click.option("--max-score-drift", type=float, default=None, help="--task instance gate: max mean |score difference|."),
], _instance_gate)
"""Decorator: the instance gate -> ``instance_gate`` (:class:`~segdeploy.parity.instances.InstanceGate`)."""


# ------------------------------------------------------------------------------------------- dataset


def _dataset(images, masks, list_file, layout, ignore_index, label_map):
    from segdeploy.datasets import DatasetOptions

    return DatasetOptions(images, masks, list_file, layout, ignore_index, label_map)


dataset_options = _group("dataset", ("images", "masks", "list_file", "layout", "ignore_index", "label_map"), [
    click.option("--data", "images", required=True, type=click.Path(), help="Image folder (or VOC root with --layout voc)."),
    click.option("--masks", type=click.Path(), default=None, help="Mask folder (matched by file stem). Omit: unlabelled mode."),
    click.option("--list", "list_file", type=click.Path(), default=None,
                 help="List file naming the items (IMAGE [MASK] or STEM per line)."),
    click.option("--layout", type=click.Choice(["folder", "voc"]), default="folder", show_default=True),
    click.option("--ignore-index", type=int, default=255, show_default=True, help="Mask value that is not a class."),
    click.option("--label-map", default=None, metavar="SPEC", help="Raw mask value -> class, e.g. '1:0,2:255' or a JSON file."),
], _dataset)
"""Decorator: the dataset group -> ``dataset`` (:class:`~segdeploy.datasets.DatasetOptions`)."""


# ------------------------------------------------------------------------------------------- ONNX Runtime


def _ort(candidate_device, ort_opt_level):
    from segdeploy.runners.onnxruntime import OrtOptions

    return OrtOptions(device=candidate_device, graph_optimization_level=ort_opt_level)


ort_options = _group("ort", ("candidate_device", "ort_opt_level"), [
    click.option("--candidate-device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
                 help="ONNX Runtime execution provider for an .onnx candidate."),
    click.option("--ort-opt-level", type=click.Choice(OrtLevel.values()), default=DEFAULT_CHECK_ORT_LEVEL.value,
                 show_default=True, help="ONNX Runtime graph optimisation level (candidate)."),
], _ort)
"""Decorator: the ONNX Runtime group -> ``ort`` (:class:`~segdeploy.runners.onnxruntime.OrtOptions`)."""


# ------------------------------------------------------------------------------------------- calibration and precision

_CALIBRATION_SET = [  # shared by the calibration and precision groups: defined once
    click.option("--calib-size", type=int, help="Sample this many calibration images (default: all)."),
    click.option("--calib-method", type=click.Choice(CalibMethod.values()), default=DEFAULT_CALIB_METHOD.value,
                 show_default=True, help="Range method; auto: entropy per tensor, percentile where entropy would "
                                         "clip more than 0.01% of a tensor's values (long tails)."),
    click.option("--percentile", type=float, default=DEFAULT_PERCENTILE, show_default=True,
                 help="For --calib-method percentile, and auto's long-tailed tensors."),
    click.option("--seed", type=int, default=0, show_default=True, help="Calibration sampling seed."),
    click.option(OPTION, "trt_target", default=None, metavar="V",
                 help=f"TensorRT the calibration cache header is for (export --engine: also the printed trtexec "
                      f"commands): {TARGET_HELP}."),
    click.option(LEGACY, "trt_version_legacy", default=None, hidden=True),  # the old name (a deprecation note)
]
_CALIBRATION_SET_NAMES = ("calib_size", "calib_method", "percentile", "seed", "trt_target", "trt_version_legacy")


def _with_target(values: dict[str, Any]) -> dict[str, Any]:
    """The group's values with ``--trt-version`` folded into ``trt_target`` (its note printed once, here)."""
    legacy = values.pop("trt_version_legacy", None)
    return {**values, "trt_target": resolve_alias(values.get("trt_target"), legacy)}


@dataclass(frozen=True)
class CalibrationArgs:
    """`segdeploy calibrate`'s values; :meth:`parse` -> :class:`~segdeploy.calibration.stage.CalibrateOptions`."""

    calib: str | None  # None: the ./calibration/ convention
    calib_size: int | None
    calib_method: str
    percentile: float
    seed: int
    trt_target: str | None
    calib_gray: str
    batch_size: int
    cache_dir: str | None
    no_cache: bool

    def parse(self, say: Callable[[str], None] | None = None) -> CalibrateOptions:
        """The options; a defaulted ``--calib`` is said through ``say`` (the convention's one line)."""
        from segdeploy.calibration.methods import Method
        from segdeploy.calibration.stage import CalibrateOptions

        calib = self.calib
        if calib is None:  # the convention: ./calibration/ (segdeploy.datasets.convention)
            from segdeploy.datasets.convention import default_calibration

            conv = default_calibration()
            if conv.calib is None:
                raise UsageError(conv.line)
            calib = conv.calib
            if say is not None:
                say(conv.line)
        return CalibrateOptions(calib=calib, size=self.calib_size, seed=self.seed,
                                method=Method(self.calib_method, percentile=self.percentile), gray=self.calib_gray,
                                batch_size=self.batch_size, trt_target=self.trt_target, cache_dir=self.cache_dir,
                                use_cache=not self.no_cache)


calibration_options = _group("calibration", ("calib",) + _CALIBRATION_SET_NAMES + (
    "calib_gray", "batch_size", "cache_dir", "no_cache"), [
    click.option("--calib", "calib", type=click.Path(path_type=str),
                 help="Folder of calibration images, or a list file (default: ./calibration/)."),
    *_CALIBRATION_SET,
    click.option("--calib-gray", type=click.Choice(["refuse", "replicate"]), default="refuse", show_default=True,
                 help="Grayscale images for a 3-channel model: refuse (error) or replicate to RGB."),
    click.option("--batch-size", type=int, default=8, show_default=True),
    click.option("--cache-dir", type=click.Path(file_okay=False, path_type=str),
                 help="Statistics cache (default: segdeploy's cache directory); another method then does not re-run "
                      "the model."),
    click.option("--no-cache", is_flag=True, help="Do not read or write the statistics cache."),
], lambda **values: CalibrationArgs(**_with_target(values)))
"""Decorator: `segdeploy calibrate`'s options -> ``calibration`` (:class:`CalibrationArgs`)."""


@dataclass(frozen=True)
class PrecisionArgs:
    """The precision group's values; :meth:`parse` -> :class:`~segdeploy.precision.stage.PrecisionOptions`, or
    None when neither --int8 nor --fp16 was given (then every other precision option must be unset)."""

    int8: bool = False
    fp16: bool = False
    calib: str | None = None
    calib_size: int | None = None
    calib_method: str = DEFAULT_CALIB_METHOD
    percentile: float = DEFAULT_PERCENTILE
    seed: int = 0
    val: str | None = None
    max_miou_drop: float | None = None
    exclude_layer: tuple[str, ...] = ()
    budget_images: int = 32
    trt_target: str | None = None  # None: the default target (the installed TensorRT, else JetPack 6.2's 10.3.0)
    require_check: bool = False

    def with_default_calib(self, say: Callable[[str], None]) -> "PrecisionArgs":
        """These values with ``--calib`` defaulted to the ./calibration/ convention (said through ``say``) when
        --int8/--fp16 is given without --calib; unchanged otherwise. Without the folder: --int8 is a UsageError
        stating the convention, --fp16 goes on without calibration (said once)."""
        if self.calib is not None or not (self.int8 or self.fp16):
            return self
        import dataclasses

        from segdeploy.datasets.convention import default_calibration

        conv = default_calibration()
        if conv.calib is None and self.int8:
            raise UsageError(f"--int8 needs calibration images: {conv.line}")
        say(conv.line)
        return dataclasses.replace(self, calib=conv.calib)

    def parse(self) -> PrecisionOptions | None:
        from segdeploy.precision.stage import PrecisionOptions

        if not (self.int8 or self.fp16):
            stray = [n for n in ("calib", "calib_size", "val", "max_miou_drop") if getattr(self, n) is not None]
            stray += ["exclude_layer"] * bool(self.exclude_layer) + ["require_check"] * self.require_check
            if stray:
                names = ", ".join("--" + n.replace("_", "-") for n in stray)
                raise UsageError(f"{names} given without --int8 or --fp16; add --int8 and/or --fp16")
            return None
        return PrecisionOptions(
            int8=self.int8, fp16=self.fp16, calib=self.calib, calib_size=self.calib_size,
            calib_method=self.calib_method or DEFAULT_CALIB_METHOD, percentile=self.percentile, seed=self.seed or 0,
            val=self.val, max_miou_drop=self.max_miou_drop, trt_target=self.trt_target,
            exclude=tuple(self.exclude_layer or ()), budget_images=self.budget_images or 32,
            require_check=self.require_check)


def _precision_args(**values: Any) -> PrecisionArgs:
    return PrecisionArgs(**{**_with_target(values), "exclude_layer": tuple(values["exclude_layer"] or ())})


precision_options = _group("precision", ("int8", "fp16", "calib", "val", "max_miou_drop", "exclude_layer",
                                         "budget_images", "require_check") + _CALIBRATION_SET_NAMES, [
    click.option("--int8", is_flag=True, help="Also write model.int8.onnx (explicit Q/DQ, TensorRT rules)."),
    click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx (strongly typed, IO float32)."),
    click.option("--calib", type=click.Path(exists=True, path_type=str),
                 help="Calibration images: folder or list file (default: ./calibration/ when it exists)."),
    *_CALIBRATION_SET,
    click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=str),
                 help="Validation split DIR/images + DIR/masks (default: --calib's val/ folder, or the val/ beside a "
                      "calib/ folder)."),
    click.option("--max-miou-drop", type=float, help="mIoU budget in points; INT8 falls back layers to meet it, else exit 3."),
    click.option("--exclude-layer", multiple=True, help="Node name kept in float (repeatable)."),
    click.option("--budget-images", type=int, default=32, show_default=True,
                 help="Validation images the budget search starts with (escalated automatically)."),
    click.option("--require-check", is_flag=True,
                 help="Fail (exit 2, before any work) when no validation split can check the lowered model(s)."),
], _precision_args)
"""Decorator: the precision group (export, precision) -> ``precision`` (:class:`PrecisionArgs`).

  --int8 / --fp16            lower to INT8 Q/DQ and/or strongly-typed FP16 ONNX (both may be given)
  --calib DIR                calibration images (folder or list file); required for --int8 (default:
                             ./calibration/ when it exists), used by --fp16 to keep ops whose activations
                             exceed the FP16 range in FP32
  --calib-size N             sample N images reproducibly (--seed); default all
  --calib-method M           auto (default: entropy per tensor, percentile where entropy would clip > 0.01 %) |
                             max | percentile | entropy (TensorRT's KL search) | mse
  --percentile P             for --calib-method percentile (default 99.99)
  --val DIR                  validation split: DIR/images (+ DIR/masks); default: --calib's val/ folder,
                             or the sibling val/ of a --calib named calib/ (calibration/<set>/calib)
  --require-check            a lowered model no validation split can check is an error (exit 2)
  --max-miou-drop X          accuracy budget in mIoU points: INT8 keeps the most sensitive layers in float
                             until the drop is within X; exit 3 when it cannot (FP16: gate only)
  --exclude-layer NAME       keep this node in float (repeatable)
  --budget-images N          validation images the sensitivity search starts with (default 32; escalated
                             automatically when its choice misses the budget on the whole split)
  --trt-target V             the TensorRT the calibration cache header is for: a version (10.13.3), a JetPack
                             release (jetpack-6.2) or a line (8.6, 10.3, 10.x, 11.x); default: the installed
                             TensorRT, else JetPack 6.2's 10.3.0 (--trt-version: the old name, deprecated)
"""


# ------------------------------------------------------------------------------------------- end-to-end variants


@dataclass(frozen=True)
class E2EArgs:
    """The end-to-end group's values (export, precision); :meth:`parse` ->
    :class:`~segdeploy.export.e2e_stage.E2EOptions`, or None without ``--end-to-end`` (then its other options must be
    unset)."""

    end_to_end: bool = False
    class_dtype: str | None = None
    with_scores: bool = False
    frame_order: str | None = None

    def parse(self, *, frames_from: str | None = None, rtol: float | None = None) -> E2EOptions | None:
        """The stage's options; ``frames_from`` the images tiled into the verification frames (the validation split),
        ``rtol`` the export's verification tolerance (default: the stage's)."""
        from segdeploy.export.e2e_stage import E2EOptions

        if not self.end_to_end:
            stray = [n for n, v in (("--class-dtype", self.class_dtype), ("--with-scores", self.with_scores or None),
                                    ("--frame-order", self.frame_order)) if v is not None]
            if stray:
                raise UsageError(f"{', '.join(stray)} given without --end-to-end; add --end-to-end")
            return None
        extra = {} if rtol is None else {"rtol": rtol}
        return E2EOptions(class_dtype=self.class_dtype or "auto", with_scores=self.with_scores,
                          input_order=self.frame_order, frames_from=frames_from, **extra)


e2e_options = _group("e2e", ("end_to_end", "class_dtype", "with_scores", "frame_order"), [
    click.option("--end-to-end", "end_to_end", is_flag=True,
                 help="Also write model[.fp16|.int8].e2e.onnx per ONNX precision: uint8 NHWC camera frames in "
                      "(preprocessing and padding in the graph), the class map out (ArgMax in the graph); verified "
                      "against the source ONNX and PyTorch on the CPU."),
    click.option("--class-dtype", type=click.Choice(["auto", "uint8", "int32"]), default=None,
                 help="With --end-to-end: the class map's type (default auto: uint8 up to 256 classes, else int32)."),
    click.option("--with-scores", is_flag=True,
                 help="With --end-to-end: also output the float32 scores, cropped to the frame."),
    click.option("--frame-order", type=click.Choice(["RGB", "BGR"]), default=None,
                 help="With --end-to-end: the camera frame's channel order (default: the model's --channel-order; "
                      "a different one is swapped in the graph)."),
], E2EArgs)
"""Decorator: the end-to-end group (export, precision) -> ``e2e`` (:class:`E2EArgs`)."""
