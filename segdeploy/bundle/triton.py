"""Triton Inference Server: a model repository from an export directory.

Contract
--------
:func:`write_repository` ``(ed, dest, name=..., ...)`` writes into the existing directory ``dest``::

    <name>/config.pbtxt            backend "onnxruntime"
    <name>/1/model.onnx            the served ONNX (the end-to-end variant when the export has one: uint8 NHWC frames
                                   in, the class map out; else the plain model: float32 NCHW in, scores out)
    <name>/labels.txt              the class names, one a line (label_filename of the first output)
    <name>_tensorrt/config.pbtxt   platform "tensorrt_plan", the same inputs and outputs
    <name>_tensorrt/onnx/<file>    the ONNX the plan is built from (Triton reads numbered version folders only)
    <name>_tensorrt/labels.txt
    build_tensorrt_plan.sh         builds <name>_tensorrt/1/model.plan with trtexec ON THE SERVER (a plan runs only
                                   on the GPU and TensorRT it was built with: build it in the Triton container)

Every config comes from the served graph itself (:func:`tensor_specs`: names, Triton data types, dims; symbolic
dims are -1) and the manifest's profile: a dynamic batch axis becomes ``max_batch_size`` = the profile's max batch
(dims then exclude it) with ``dynamic_batching {}``; a static batch is ``max_batch_size: 0`` with the batch in the
dims. :func:`render_config` writes protobuf text format that Triton's own ``ModelConfig`` message parses (the test
parses it with ``tritonclient``'s ``model_config_pb2``). The trtexec line comes from
:func:`segdeploy.trt.trtexec.trtexec_command` (the one place that knows each TensorRT line's flags) with the served
input's min/opt/max shapes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from segdeploy import __version__
from segdeploy.errors import UsageError
from segdeploy.vocab import MODEL_ONNX, ONNX_PRECISIONS, Precision

LABELS_FILE = "labels.txt"
SERVED_FILE = MODEL_ONNX  # the onnxruntime backend loads <version>/model.onnx unless told otherwise
PLAN_FILE = "model.plan"  # the tensorrt_plan platform's default file name
BUILD_SCRIPT = "build_tensorrt_plan.sh"
TRT_SUFFIX = "_tensorrt"
DATA_TYPES = {TensorProto.UINT8: "TYPE_UINT8", TensorProto.INT8: "TYPE_INT8", TensorProto.INT32: "TYPE_INT32",
              TensorProto.INT64: "TYPE_INT64", TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16",
              TensorProto.BOOL: "TYPE_BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's DataType name, e.g. TYPE_UINT8
    dims: tuple[int, ...]  # without the batch axis when the model batches; -1 for a dynamic axis


@dataclass(frozen=True)
class FrameProfile:
    """min/opt/max shapes of the served input (what trtexec's --minShapes/--optShapes/--maxShapes take)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def tensor_specs(model: onnx.ModelProto, batched: bool) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs as Triton tensors (``batched``: the first axis is Triton's batch)."""
    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        t = v.type.tensor_type
        if t.elem_type not in DATA_TYPES:
            raise UsageError(f"tensor {v.name!r} has ONNX type {TensorProto.DataType.Name(t.elem_type)}, which this "
                             "Triton export does not map")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return TensorSpec(v.name, DATA_TYPES[t.elem_type], dims[1:] if batched else dims)

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def _tensor_text(kind: str, specs: list[TensorSpec], labels: str | None) -> list[str]:
    out = [f"{kind} ["]
    for i, s in enumerate(specs):
        label = f'\n    label_filename: "{labels}"' if labels and i == 0 else ""
        out.append(f'  {{\n    name: "{s.name}"\n    data_type: {s.data_type}\n    dims: [ {", ".join(map(str, s.dims))} ]'
                   f"{label}\n  }}{',' if i + 1 < len(specs) else ''}")
    out.append("]")
    return out


def render_config(name: str, max_batch_size: int, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                  backend: str | None = None, platform: str | None = None, labels: str | None = LABELS_FILE,
                  default_model_filename: str | None = None) -> str:
    """``config.pbtxt`` text (protobuf text format of Triton's ``inference.ModelConfig``)."""
    lines = [f"# Triton model configuration written by segdeploy {__version__}", f'name: "{name}"']
    lines += [f'backend: "{backend}"'] if backend else []
    lines += [f'platform: "{platform}"'] if platform else []
    lines += [f'default_model_filename: "{default_model_filename}"'] if default_model_filename else []
    lines.append(f"max_batch_size: {max_batch_size}")
    lines += _tensor_text("input", inputs, None) + _tensor_text("output", outputs, labels)
    if max_batch_size > 0:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def _served(ed: Any, precision: str, end_to_end: bool | None) -> tuple[Path, bool]:
    """(the ONNX to serve for ``precision``, whether it is the end-to-end variant)."""
    p = Precision.parse(precision, "--precision")
    if p not in ONNX_PRECISIONS:
        raise UsageError(f"Triton serves an ONNX per precision ({', '.join(ONNX_PRECISIONS)}), not {p}")
    e2e = ed.e2e_file(p)
    if end_to_end and not e2e:
        raise UsageError(f"the export holds no end-to-end {p} variant; run `segdeploy export ... --end-to-end` first")
    if e2e and end_to_end is not False:
        return ed.file(e2e), True
    plain = MODEL_ONNX if p == Precision.FP32 else ed.lowered_file(p)
    if not plain or not ed.has(plain):
        raise UsageError(f"the export holds no {p} model; run `segdeploy precision` for it first, or choose another "
                         "precision")
    return ed.file(plain), False


def frame_profile(ed: Any, e2e: bool) -> FrameProfile:
    """The served input's min/opt/max shapes (the end-to-end profile is NHWC)."""
    if e2e:
        prof = ed.end_to_end["profile"]
        return FrameProfile(tuple(prof["min"]), tuple(prof["opt"]), tuple(prof["max"]))
    p = ed.profile
    return FrameProfile(p.min, p.opt, p.max)


def write_repository(ed: Any, dest: Path, *, name: str, precision: str = Precision.FP32,
                     trt_precision: str | None = None, end_to_end: bool | None = None,
                     trt_line: str | None = None) -> dict[str, Any]:
    """The model repository (see the module docstring) into ``dest``; returns what was written. UsageError for a
    precision or variant the export lacks, or a model that needs segdeploy's TensorRT plugins (a Triton plan would
    need them loaded into the server: not supported)."""
    if ed.needs_plugins:
        raise UsageError("this model needs segdeploy's TensorRT plugins, which a Triton model repository cannot carry; "
                         "use the device bundle (segdeploy bundle --target orin|thor|x86)")
    served, e2e = _served(ed, precision, end_to_end)
    trt_src, trt_e2e = _served(ed, trt_precision or precision, end_to_end)
    model = onnx.load(str(served))
    prof = frame_profile(ed, e2e)
    batched = prof.min[0] != prof.max[0]
    inputs, outputs = tensor_specs(model, batched)
    max_batch = prof.max[0] if batched else 0
    labels = _labels(ed)
    (dest / name / "1").mkdir(parents=True)
    (dest / name / "1" / SERVED_FILE).write_bytes(served.read_bytes())
    (dest / name / "config.pbtxt").write_text(render_config(name, max_batch, inputs, outputs, backend="onnxruntime"),
                                              encoding="utf-8")
    (dest / name / LABELS_FILE).write_text(labels, encoding="utf-8")
    trt_name = name + TRT_SUFFIX
    trt_inputs, trt_outputs = tensor_specs(onnx.load(str(trt_src)), batched)
    (dest / trt_name / "onnx").mkdir(parents=True)
    (dest / trt_name / "onnx" / trt_src.name).write_bytes(trt_src.read_bytes())
    (dest / trt_name / "config.pbtxt").write_text(
        render_config(trt_name, max_batch, trt_inputs, trt_outputs, platform="tensorrt_plan",
                      default_model_filename=PLAN_FILE), encoding="utf-8")
    (dest / trt_name / LABELS_FILE).write_text(labels, encoding="utf-8")
    cmd = _trtexec(trt_name, trt_src.name, trt_inputs[0].name, frame_profile(ed, trt_e2e),
                   Precision(trt_precision or precision), trt_line)
    (dest / BUILD_SCRIPT).write_text(_script(trt_name, cmd), encoding="utf-8")
    (dest / BUILD_SCRIPT).chmod(0o755)
    return {"models": {name: {"backend": "onnxruntime", "onnx": served.name, "end_to_end": e2e},
                       trt_name: {"platform": "tensorrt_plan", "onnx": trt_src.name, "end_to_end": trt_e2e,
                                  "plan": f"{trt_name}/1/{PLAN_FILE} (built by {BUILD_SCRIPT} on the server)"}},
            "max_batch_size": max_batch, "inputs": [s.__dict__ for s in inputs],
            "outputs": [s.__dict__ for s in outputs], "trtexec": cmd}


def _labels(ed: Any) -> str:
    names = list(ed.class_names) or [f"class{i}" for i in range(max(2, ed.num_classes))]
    return "\n".join(names) + "\n"


def _trtexec(model: str, onnx_name: str, input_name: str, prof: FrameProfile, precision: Precision,
             line: str | None) -> str:
    from segdeploy.trt.trtexec import trtexec_command

    cmd = trtexec_command(f"{model}/onnx/{onnx_name}", input_name, prof, precision, target=line,  # type: ignore[arg-type]
                          save_engine=f"{model}/1/{PLAN_FILE}")
    return " ".join(['"$TRTEXEC"'] + [shlex.quote(a) for a in cmd.argv[1:]])


def _script(model: str, cmd: str) -> str:
    return ("#!/usr/bin/env bash\n"
            f"# segdeploy {__version__}: build {model}/1/{PLAN_FILE} with the TensorRT of the Triton server that will "
            "load it\n# (run inside the tritonserver container; a plan runs only on that GPU and TensorRT version).\n"
            "set -euo pipefail\ncd \"$(dirname \"$0\")\"\n"
            "TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}\n"
            f"mkdir -p {model}/1\n{cmd}\n")
