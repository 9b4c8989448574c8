"""DeepStream: an ``nvinfer`` configuration and a DeepStream variant of the model, from the export's manifest.

Contract
--------
``nvinfer`` normalises every frame as ``y = net-scale-factor * (x - offsets[c])`` -- one scale for all channels --
on planar float32 in ``model-color-format`` order, resized to ``infer-dims``. segdeploy's preprocessing is
``y = (x * scale - mean[c]) / std[c]``. :func:`factors` splits it exactly: ``net-scale-factor = scale / s``,
``offsets[c] = mean[c] / scale``, and what remains per channel, ``s / std[c]`` (``s`` = the common std when all
channels share one, else 1), is folded into the graph: :func:`build_variant` puts ``Div(std[c] / s)`` in front of the
unchanged network (nothing when all stds are equal) and ``Softmax`` over the classes behind it (one-score binary
models: ``Softmax([0, score])``, i.e. two classes). The Softmax is needed: nvinfer's segmentation parser gives a pixel
the class whose score exceeds both ``segmentation-threshold`` and -1 -- raw logits below -1 would leave pixels
unlabelled (-1); probabilities with threshold 0.0 give exactly the argmax. The variant's input is
:data:`INPUT` (float32 NCHW, what nvinfer feeds), its output :data:`OUTPUT` (float32 NKHW, ``output-blob-names``).

:func:`verify_variant` measures nvinfer's formula (parsed back from the rendered text) followed by the variant against
the manifest's preprocessing followed by the model: max |difference| of the probabilities and the class agreement.

:func:`render_config` writes ``config_infer_primary_segdeploy.txt`` (:data:`CONFIG_FILE`) for one precision:
``network-type=2``, ``onnx-file``, ``model-engine-file`` (nvinfer's own name for the engine it builds and caches:
``<onnx-file>_b<batch>_gpu<id>_<mode>.engine``), ``network-mode`` (0 fp32, 1 int8, 2 fp16), ``int8-calib-file``
(implicit INT8; for the explicit Q/DQ model too, since nvinfer enables INT8 only when it has a calibration file --
TensorRT then ignores the calibrator because the network carries its own scales), ``batch-size``, ``infer-dims``
(the profile's opt H/W), ``model-color-format`` (0 RGB, 1 BGR), ``net-scale-factor``/``offsets``,
``num-detected-classes``, ``segmentation-threshold=0.0``, ``output-blob-names``, ``labelfile-path`` (one class name a
line, :data:`LABELS_FILE`) and ``custom-lib-path`` for models that need segdeploy's TensorRT plugins. Keys are those
of the ``[property]`` group read by nvinfer in DeepStream 6.4, 7.0, 7.1 and 8.0 (``gstnvinfer_property_parser``); no
key newer than 6.0 is used.
"""

from __future__ import annotations

import configparser
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segdeploy import __version__
from segdeploy.errors import UsageError
from segdeploy.export.e2e import check, compose
from segdeploy.spec import Preprocess, ShapeProfile
from segdeploy.vocab import INPUT_NAME, OUTPUT_NAME, Precision

CONFIG_FILE = "config_infer_primary_segdeploy.txt"
LABELS_FILE = "labels.txt"
INPUT = "ds_input"  # the variant's input: nvinfer's normalised planar frame
OUTPUT = "probabilities"  # softmax over the classes, [N, K, H, W] float32
NETWORK_MODE = {Precision.FP32: 0, Precision.INT8: 1, Precision.INT8_IMPLICIT: 1, Precision.FP16: 2}
ENGINE_MODE = {0: "fp32", 1: "int8", 2: "fp16"}  # nvinfer's suffix of the engine file it builds
COLOR_FORMAT = {"RGB": 0, "BGR": 1}
SUPPORTED_RELEASES = "DeepStream 6.4, 7.0 (TensorRT 8.6), 7.1 (TensorRT 10.3) and 8.0 (TensorRT 10.x)"
PREFIX = "ds/"


@dataclass(frozen=True)
class Factors:
    """segdeploy's normalisation split into nvinfer's part and the graph's part."""

    net_scale_factor: float
    offsets: tuple[float, ...]
    in_graph: tuple[float, ...] | None  # the divisors the variant applies per channel (None: nothing)
    model_color_format: int


def factors(pre: Preprocess) -> Factors:
    """``(x * scale - mean) / std`` == ``(net_scale_factor * (x - offsets)) / in_graph`` (see the module docstring)."""
    std = tuple(float(s) for s in pre.std)
    uniform = all(s == std[0] for s in std)
    return Factors(net_scale_factor=float(pre.scale) / (std[0] if uniform else 1.0),
                   offsets=tuple(float(m) / float(pre.scale) for m in pre.mean),
                   in_graph=None if uniform else std, model_color_format=COLOR_FORMAT[pre.channel_order])


def build_variant(network: onnx.ModelProto, pre: Preprocess, num_classes: int) -> onnx.ModelProto:
    """The network between the per-channel divisors nvinfer cannot apply and a Softmax over the classes."""
    f = factors(pre)
    c = len(pre.mean)
    inits: list[onnx.TensorProto] = []
    prefix: list[onnx.NodeProto] = []
    src = INPUT_NAME
    if f.in_graph is not None:
        src = INPUT
        inits.append(numpy_helper.from_array(np.asarray(f.in_graph, np.float32).reshape(1, c, 1, 1), PREFIX + "std"))
        prefix.append(helper.make_node("Div", [INPUT, PREFIX + "std"], [INPUT_NAME], name=PREFIX + "std"))
    suffix: list[onnx.NodeProto] = []
    scores = OUTPUT_NAME
    if num_classes == 1:  # one score, > 0 the foreground: [0, score] has the same argmax, as two classes
        suffix += [helper.make_node("Shape", [OUTPUT_NAME], [PREFIX + "shape"], name=PREFIX + "shape"),
                   helper.make_node("ConstantOfShape", [PREFIX + "shape"], [PREFIX + "zeros"], name=PREFIX + "zeros",
                                    value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
                   helper.make_node("Concat", [PREFIX + "zeros", OUTPUT_NAME], [PREFIX + "two_class"],
                                    name=PREFIX + "two_class", axis=1)]
        scores = PREFIX + "two_class"
    suffix.append(helper.make_node("Softmax", [scores], [OUTPUT], name=PREFIX + "softmax", axis=1))
    ref = network.graph.input[0].type.tensor_type.shape.dim
    dims = [d.dim_param or d.dim_value for d in ref]
    out_dims = [d.dim_param or d.dim_value for d in network.graph.output[0].type.tensor_type.shape.dim]
    out_dims[1] = max(2, num_classes)
    model = compose(network, inputs=[helper.make_tensor_value_info(src, TensorProto.FLOAT, dims)],
                    outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_dims)],
                    prefix=prefix, suffix=suffix, initializers=inits, name=f"{network.graph.name or 'segdeploy'}_ds")
    check(model)
    return model


# ------------------------------------------------------------------------------------------------ the config


@dataclass(frozen=True)
class ConfigPlan:
    """What one nvinfer configuration describes (paths relative to the configuration file)."""

    precision: str
    onnx_file: str
    batch_size: int
    infer_hw: tuple[int, int]
    num_classes: int
    labels_file: str | None = LABELS_FILE
    int8_calib_file: str | None = None
    custom_lib_path: str | None = None
    gpu_id: int = 0

    @property
    def network_mode(self) -> int:
        return NETWORK_MODE[Precision(self.precision)]

    @property
    def engine_file(self) -> str:
        """nvinfer's name for the engine it builds from ``onnx_file`` (so the second start loads it)."""
        return f"{self.onnx_file}_b{self.batch_size}_gpu{self.gpu_id}_{ENGINE_MODE[self.network_mode]}.engine"


def plan_for(precision: str, profile: ShapeProfile, num_classes: int, *, int8_calib_file: str | None,
             custom_lib_path: str | None, with_labels: bool, batch_size: int | None = None) -> ConfigPlan:
    """The :class:`ConfigPlan` of ``precision`` (the variant's file is ``Precision.deepstream_file``). UsageError
    when INT8 has no calibration file or the batch is outside the profile."""
    p = Precision.parse(precision, "--precision")
    n = profile.opt[0] if batch_size is None else batch_size
    if not profile.min[0] <= n <= profile.max[0]:
        raise UsageError(f"DeepStream batch-size {n} is outside the model's batch range {profile.min[0]}..{profile.max[0]}; "
                         "re-export with --max-batch or choose a batch in range")
    if NETWORK_MODE[p] == 1 and not int8_calib_file:
        raise UsageError(f"DeepStream builds {p} only with a calibration file (nvinfer falls back to FP16 without one); "
                         "run `segdeploy calibrate` or export with --int8 first")
    return ConfigPlan(p, p.deepstream_file, n, (profile.opt[2], profile.opt[3]), max(2, num_classes),
                      LABELS_FILE if with_labels else None, int8_calib_file if NETWORK_MODE[p] == 1 else None,
                      custom_lib_path)


def _fmt(v: float) -> str:
    return repr(float(v))  # the shortest text that parses back to the same double


def render_config(plan: ConfigPlan, f: Factors) -> str:
    """The nvinfer configuration text (see the module docstring)."""
    lines = [
        f"# nvinfer configuration written by segdeploy {__version__} (semantic segmentation, {plan.precision}).",
        f"# Keys of {SUPPORTED_RELEASES}. Paths are relative to this file.",
        "# nvinfer scales every frame to infer-dims (maintain-aspect-ratio=0), then y = net-scale-factor * (x - offsets);",
        f"# {plan.onnx_file} applies the per-channel rest of segdeploy's normalisation and a softmax over the classes.",
        "[property]", f"gpu-id={plan.gpu_id}", "gie-unique-id=1", "process-mode=1", "network-type=2",
        f"onnx-file={plan.onnx_file}", f"model-engine-file={plan.engine_file}",
        f"network-mode={plan.network_mode}",
    ]
    if plan.int8_calib_file:
        lines.append(f"int8-calib-file={plan.int8_calib_file}")
    lines += [
        f"batch-size={plan.batch_size}", f"infer-dims=3;{plan.infer_hw[0]};{plan.infer_hw[1]}",
        f"model-color-format={f.model_color_format}", f"net-scale-factor={_fmt(f.net_scale_factor)}",
        f"offsets={';'.join(_fmt(o) for o in f.offsets)}", "maintain-aspect-ratio=0",
        f"num-detected-classes={plan.num_classes}", "segmentation-threshold=0.0", f"output-blob-names={OUTPUT}",
    ]
    if plan.labels_file:
        lines.append(f"labelfile-path={plan.labels_file}")
    if plan.custom_lib_path:
        lines.append(f"custom-lib-path={plan.custom_lib_path}")
    return "\n".join(lines) + "\n"


def labels_text(class_names: Sequence[str], num_classes: int) -> str:
    """One class name a line (binary models: background + the one class)."""
    names = list(class_names) or [f"class{i}" for i in range(max(2, num_classes))]
    if num_classes == 1 and len(names) == 1:
        names = ["background"] + names
    return "\n".join(names) + "\n"


def parse_config(text: str) -> dict[str, str]:
    """The ``[property]`` group of a configuration text (nvinfer reads it with GLib's key-file parser)."""
    cp = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), inline_comment_prefixes=None)
    cp.optionxform = str  # keys are case-sensitive
    cp.read_string(text)
    return dict(cp["property"])


# ------------------------------------------------------------------------------------------------ verification


def nvinfer_normalise(frames: np.ndarray, config: dict[str, str]) -> np.ndarray:
    """nvinfer's ``y = net-scale-factor * (x - offsets[c])`` on [N, H, W, 3] uint8 RGB frames, float32 NCHW planes
    in ``model-color-format`` order, with the values the configuration text holds."""
    x = frames.astype(np.float32)
    if int(config["model-color-format"]) == COLOR_FORMAT["BGR"]:
        x = x[..., ::-1]
    off = np.asarray([float(v) for v in config["offsets"].split(";")], np.float32)
    y = np.float32(float(config["net-scale-factor"])) * (x - off)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def verify_variant(variant: bytes, source: bytes, config_text: str, pre: Preprocess, profile: ShapeProfile,
                   frames: np.ndarray) -> dict[str, Any]:
    """nvinfer's formula + the variant vs the manifest's preprocessing + the source model (softmax of its scores), on
    [N, H, W, 3] uint8 RGB ``frames`` already at an accepted size -> max |diff| of the probabilities, class agreement."""
    import onnxruntime as ort

    from segdeploy.datasets.preprocess import to_batch

    so = ort.SessionOptions()
    so.log_severity_level = 3
    run_v = ort.InferenceSession(variant, so, providers=["CPUExecutionProvider"])
    run_s = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    ds = run_v.run(None, {run_v.get_inputs()[0].name: nvinfer_normalise(frames, parse_config(config_text))})[0]
    x, _ = to_batch(list(frames), pre, profile)
    scores = run_s.run(None, {INPUT_NAME: x})[0].astype(np.float64)
    if scores.shape[1] == 1:
        scores = np.concatenate([np.zeros_like(scores), scores], axis=1)
    e = np.exp(scores - scores.max(1, keepdims=True))
    ref = e / e.sum(1, keepdims=True)
    return {"frames": list(frames.shape), "max_abs_diff": float(np.max(np.abs(ds - ref))),
            "class_agreement": float(np.mean(ds.argmax(1) == ref.argmax(1)))}


# ------------------------------------------------------------------------------------------------ the files


def default_precision(ed: Any) -> str:
    """The precision a DeepStream configuration uses when none is asked: int8, else fp16, else fp32 (plugin models:
    fp32, the only graph mapped to plugin nodes)."""
    variants = ed.onnx_variants()
    if ed.needs_plugins:
        return Precision.FP32
    return next(p for p in (Precision.INT8, Precision.FP16, Precision.FP32) if p in variants)


def write_files(ed: Any, dest: Any, images: list[np.ndarray], precision: str | None = None, *,
                int8_calib_file: str | None = None, custom_lib_path: str | None = None,
                batch_size: int | None = None) -> dict[str, Any]:
    """The DeepStream variant, :data:`CONFIG_FILE` and :data:`LABELS_FILE` of export ``ed`` (an ExportDir) into the
    existing directory ``dest``; ``images`` (RGB) are tiled into the frames of :func:`verify_variant` (run on the
    standard-op graph: plugin nodes have no CPU implementation in ONNX Runtime). Returns what was written and
    measured. Raises UsageError (a precision the export lacks; lowered precisions of plugin models)."""
    from segdeploy.export.e2e_stage import tile_frames
    from segdeploy.vocab import MODEL_ONNX

    p = Precision.parse(precision, "--precision") if precision else default_precision(ed)
    variants = ed.onnx_variants()
    onnx_p = Precision.FP32 if p == Precision.INT8_IMPLICIT else p
    if onnx_p not in variants or (ed.needs_plugins and p != Precision.FP32):
        raise UsageError(f"the export holds no {p} model DeepStream can build (plugin models: fp32 only); run "
                         f"`segdeploy precision` for it first, or choose another --precision")
    plan = plan_for(p, ed.profile, ed.num_classes, int8_calib_file=int8_calib_file, custom_lib_path=custom_lib_path,
                    with_labels=True, batch_size=batch_size)
    pre, f = ed.preprocess, factors(ed.preprocess)
    variant = build_variant(onnx.load(str(variants[onnx_p])), pre, ed.num_classes)
    text = render_config(plan, f)
    standard = ed.file(MODEL_ONNX if onnx_p == Precision.FP32 else ed.lowered_file(onnx_p))
    checked = variant if standard == variants[onnx_p] else build_variant(onnx.load(str(standard)), pre, ed.num_classes)
    frames = tile_frames((plan.batch_size, *plan.infer_hw), images, np.random.default_rng(0))
    measured = verify_variant(checked.SerializeToString(), standard.read_bytes(), text, pre, ed.profile, frames)
    (dest / plan.onnx_file).write_bytes(variant.SerializeToString())
    (dest / CONFIG_FILE).write_text(text, encoding="utf-8")
    (dest / LABELS_FILE).write_text(labels_text(ed.class_names, ed.num_classes), encoding="utf-8")
    return {"precision": p, "config": CONFIG_FILE, "onnx": plan.onnx_file, "source_onnx": variants[onnx_p].name,
            "engine": plan.engine_file, "labels": LABELS_FILE, "net_scale_factor": f.net_scale_factor,
            "offsets": list(f.offsets), "in_graph_divisors": list(f.in_graph) if f.in_graph else None,
            "check": {**measured, "against": f"manifest preprocessing + {standard.name} (softmax of its scores)"},
            "releases": SUPPORTED_RELEASES}
