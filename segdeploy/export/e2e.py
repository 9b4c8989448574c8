"""End-to-end variants of an exported graph: 8-bit camera frames in, class maps out.

Contract
--------
:func:`build_e2e` ``(network, spec) -> onnx.ModelProto`` wraps a verified segdeploy graph (``model.onnx``,
``model.fp16.onnx``, ``model.int8.onnx``; input :data:`~segdeploy.vocab.INPUT_NAME` float32 NCHW, output
:data:`~segdeploy.vocab.OUTPUT_NAME` scores NKHW) between

* a **prefix** doing the manifest's preprocessing exactly as :func:`segdeploy.datasets.preprocess.to_batch` does in
  pad mode: input :data:`~segdeploy.vocab.E2E_INPUT_NAME` uint8 ``[N, H, W, 3]`` -> ``Cast`` to float32 -> a
  channel swap (``Gather`` on the last axis) when the frame's channel order differs from the model's ->
  ``Transpose`` to NCHW -> ``Mul(scale)`` -> ``Sub(mean)`` -> ``Div(std)`` (the same float32 operations in the same
  order as NumPy, so the network sees bit-identical values) -> ``Pad`` bottom/right with 0 to
  ``max(ceil(H / m) * m, min_H)`` x ``max(ceil(W / m) * m, min_W)`` (computed from ``Shape`` at run time; ``m`` the
  spatial multiple, ``min`` the profile's); and
* a **suffix**: ``Slice`` the scores back to ``H x W`` -> ``ArgMax(axis=1, keepdims=0)`` -> ``Cast`` to the class-map
  type (:data:`~segdeploy.vocab.CLASS_MAP_NAME`, ``[N, H, W]``): uint8 through float32 (TensorRT makes uint8 outputs
  only from float; class ids < 2**24 are exact), int32 directly. One score channel (binary models: score > 0 is
  the foreground) is ``Greater(0)`` instead of the ArgMax. With ``spec.with_scores`` the cropped float32 scores
  are a second output, :data:`~segdeploy.vocab.E2E_SCORES_NAME`.

The network's nodes and initializers are copied untouched (byte-identical; :func:`network_unchanged` checks it,
so an INT8 graph keeps exactly its Q/DQ nodes): every added node and initializer is float or shape arithmetic
outside the quantized region, named ``e2e/...``. The result passes ``onnx.checker.check_model(full_check=True)``
when the network has only standard ops (else the plain check; TensorRT plugin nodes cannot be typed by ONNX).

:func:`refusal` says in one line why a model cannot get a variant (resize preprocessing: Pillow's bilinear
resize on 8-bit images is not reproducible by an ONNX ``Resize`` -- it rounds to uint8 between its separable
passes -- so segdeploy refuses rather than ship an approximation; scores below the input resolution; a channel
count other than 3). :func:`compose` is the general tool (prefix nodes + network + suffix nodes), also used for
the DeepStream variant (:mod:`segdeploy.bundle.deepstream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segdeploy.errors import ArtifactError
from segdeploy.spec import Preprocess, ShapeProfile
from segdeploy.vocab import (
    CLASS_MAP_NAME,
    E2E_INPUT_NAME,
    E2E_SCORES_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    Name,
)

PREFIX = "e2e/"
FRAME_DIMS = ("frame_height", "frame_width")  # the symbolic H/W of the frame and the class map


class ClassDtype(Name):
    """The class map's element type: ``auto`` is uint8 up to 256 classes, else int32."""

    AUTO = "auto"
    UINT8 = "uint8"
    INT32 = "int32"


@dataclass(frozen=True)
class E2ESpec:
    """Everything the prefix and suffix need (from the manifest and the caller's options)."""

    preprocess: Preprocess
    profile: ShapeProfile
    num_classes: int
    class_dtype: ClassDtype = ClassDtype.AUTO
    with_scores: bool = False
    input_order: str | None = None  # the frame's channel order; None: the model's (preprocess.channel_order)

    @property
    def frame_order(self) -> str:
        return self.input_order or self.preprocess.channel_order

    @property
    def swaps_channels(self) -> bool:
        return self.frame_order != self.preprocess.channel_order

    @property
    def map_dtype(self) -> ClassDtype:
        """The class map's type after ``auto`` is resolved (binary models have 2 classes)."""
        if self.class_dtype != ClassDtype.AUTO:
            return self.class_dtype
        return ClassDtype.UINT8 if max(2, self.num_classes) <= 256 else ClassDtype.INT32

    @property
    def pads(self) -> bool:
        """Whether a frame can need padding (a spatial multiple, or a minimum size above 1)."""
        p = self.profile
        return p.spatial_multiple > 1 or p.min[2] > 1 or p.min[3] > 1


def preprocess_refusal(preprocess: Preprocess) -> str | None:
    """The part of :func:`refusal` the export options alone decide (checked before the model loads), or None."""
    if preprocess.resize != "pad":
        return ("--end-to-end needs pad preprocessing, but this export uses resize preprocessing (Pillow's bilinear "
                "resize of the 8-bit frame, which rounds between its passes and no ONNX Resize reproduces exactly); "
                "re-export with --resize pad, or resize frames on the host and use model.onnx")
    return None


def refusal(preprocess: Preprocess, output_stride: Sequence[float], in_channels: int,
            num_classes: int = 2, class_dtype: ClassDtype = ClassDtype.AUTO) -> str | None:
    """Why this model cannot get an end-to-end variant (one line with the fix), or None."""
    reason = preprocess_refusal(preprocess)
    if reason:
        return reason
    if any(float(s) != 1.0 for s in output_stride):
        return (f"--end-to-end needs scores at the input resolution, but this model's are at {list(output_stride)} "
                "of it; export a model that upsamples its scores to the input size")
    if in_channels != 3:
        return f"--end-to-end takes 3-channel camera frames, but this model has {in_channels} input channels"
    if class_dtype == ClassDtype.UINT8 and num_classes > 256:
        return f"--class-dtype uint8 holds 256 classes, but this model has {num_classes}; use --class-dtype int32"
    return None


# ------------------------------------------------------------------------------------------------ composition


def _init(name: str, value: Any, dtype: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), PREFIX + name)


def _node(op: str, inputs: list[str], output: str, **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=PREFIX + output.removeprefix(PREFIX), **attrs)


def compose(network: onnx.ModelProto, *, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
            prefix: list[onnx.NodeProto], suffix: list[onnx.NodeProto],
            initializers: list[onnx.TensorProto], name: str) -> onnx.ModelProto:
    """``network`` between ``prefix`` and ``suffix`` nodes, with new graph ``inputs``/``outputs``.

    The prefix must produce the network's input tensors and the suffix consume its outputs by their names; the
    network's nodes, initializers and value infos are copied untouched (its former inputs and outputs become
    value infos). Raises ArtifactError when a new name collides with one of the network's."""
    g = network.graph
    taken = {t for n in g.node for t in list(n.input) + list(n.output)} | {i.name for i in g.initializer}
    taken |= {n.name for n in g.node if n.name}
    new = [o for n in prefix + suffix for o in n.output] + [i.name for i in initializers]
    new += [n.name for n in prefix + suffix] + [v.name for v in inputs]
    clash = sorted(t for t in set(new) if t in taken and t not in {i.name for i in g.input} | {o.name for o in g.output})
    if clash:
        raise ArtifactError(f"the graph already has a tensor or node named {clash[0]!r}; rename it in the model")
    graph = helper.make_graph(
        list(prefix) + list(g.node) + list(suffix), name, list(inputs), list(outputs),
        initializer=list(g.initializer) + list(initializers),
        value_info=list(g.value_info) + [v for v in list(g.input) + list(g.output)
                                         if v.name not in {t.name for t in inputs + outputs}],
        sparse_initializer=list(g.sparse_initializer))
    out = helper.make_model(graph, opset_imports=list(network.opset_import), producer_name="segdeploy",
                            producer_version=network.producer_version, ir_version=network.ir_version)
    out.metadata_props.extend(network.metadata_props)
    out.functions.extend(network.functions)
    return out


def _prefix(spec: E2ESpec) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """uint8 NHWC frame -> the network's float32 NCHW input (see the module docstring)."""
    pre, prof = spec.preprocess, spec.profile
    c = len(pre.mean)
    inits = [_init("scale", pre.scale, np.float32), _init("mean", np.reshape(pre.mean, (1, c, 1, 1)), np.float32),
             _init("std", np.reshape(pre.std, (1, c, 1, 1)), np.float32)]
    nodes = [_node("Cast", [E2E_INPUT_NAME], PREFIX + "frame_f32", to=TensorProto.FLOAT)]
    src = PREFIX + "frame_f32"
    if spec.swaps_channels:
        inits.append(_init("reverse_channels", [2, 1, 0], np.int64))
        nodes.append(_node("Gather", [src, PREFIX + "reverse_channels"], PREFIX + "frame_model_order", axis=3))
        src = PREFIX + "frame_model_order"
    normalised = INPUT_NAME if not spec.pads else PREFIX + "normalised"
    nodes += [_node("Transpose", [src], PREFIX + "nchw", perm=[0, 3, 1, 2]),
              _node("Mul", [PREFIX + "nchw", PREFIX + "scale"], PREFIX + "scaled"),
              _node("Sub", [PREFIX + "scaled", PREFIX + "mean"], PREFIX + "centred"),
              _node("Div", [PREFIX + "centred", PREFIX + "std"], normalised)]
    if spec.pads:
        m = prof.spatial_multiple
        inits += [_init("hw_starts", [1], np.int64), _init("hw_ends", [3], np.int64),
                  _init("multiple_minus_1", [m - 1, m - 1], np.int64), _init("multiple", [m, m], np.int64),
                  _init("min_hw", [prof.min[2], prof.min[3]], np.int64), _init("zero_pads", [0] * 6, np.int64),
                  _init("pad_value", 0.0, np.float32)]
        nodes += [_node("Shape", [E2E_INPUT_NAME], PREFIX + "frame_shape"),
                  _node("Slice", [PREFIX + "frame_shape", PREFIX + "hw_starts", PREFIX + "hw_ends"], PREFIX + "hw"),
                  _node("Add", [PREFIX + "hw", PREFIX + "multiple_minus_1"], PREFIX + "hw_up"),
                  _node("Div", [PREFIX + "hw_up", PREFIX + "multiple"], PREFIX + "hw_blocks"),
                  _node("Mul", [PREFIX + "hw_blocks", PREFIX + "multiple"], PREFIX + "hw_aligned"),
                  _node("Max", [PREFIX + "hw_aligned", PREFIX + "min_hw"], PREFIX + "hw_padded"),
                  _node("Sub", [PREFIX + "hw_padded", PREFIX + "hw"], PREFIX + "hw_extra"),
                  helper.make_node("Concat", [PREFIX + "zero_pads", PREFIX + "hw_extra"], [PREFIX + "pads"],
                                   name=PREFIX + "pads", axis=0),
                  helper.make_node("Pad", [normalised, PREFIX + "pads", PREFIX + "pad_value"], [INPUT_NAME],
                                   name=PREFIX + "pad", mode="constant")]
    return nodes, inits


def _suffix(spec: E2ESpec) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The network's scores -> the class map (and the cropped scores)."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    scores = OUTPUT_NAME
    cropped = E2E_SCORES_NAME if spec.with_scores else PREFIX + "cropped"
    if spec.pads:
        inits += [_init("crop_starts", [0, 0], np.int64), _init("crop_axes", [2, 3], np.int64)]
        nodes.append(helper.make_node("Slice", [scores, PREFIX + "crop_starts", PREFIX + "hw", PREFIX + "crop_axes"],
                                      [cropped], name=PREFIX + "crop"))
    else:
        nodes.append(helper.make_node("Identity", [scores], [cropped], name=PREFIX + "crop"))
    if spec.num_classes == 1:  # binary: one score per pixel, > 0 is the foreground
        inits += [_init("zero", 0.0, np.float32), _init("class_axis", [1], np.int64)]
        nodes += [_node("Greater", [cropped, PREFIX + "zero"], PREFIX + "foreground"),
                  _node("Squeeze", [PREFIX + "foreground", PREFIX + "class_axis"], PREFIX + "foreground_nhw"),
                  _node("Cast", [PREFIX + "foreground_nhw"], PREFIX + "class_ids_f32", to=TensorProto.FLOAT)]
        ids = PREFIX + "class_ids_f32"
    else:
        nodes.append(_node("ArgMax", [cropped], PREFIX + "class_ids", axis=1, keepdims=0))
        ids = PREFIX + "class_ids"
        if spec.map_dtype == ClassDtype.UINT8:  # TensorRT makes uint8 outputs from float only
            nodes.append(_node("Cast", [ids], PREFIX + "class_ids_f32", to=TensorProto.FLOAT))
            ids = PREFIX + "class_ids_f32"
    to = TensorProto.UINT8 if spec.map_dtype == ClassDtype.UINT8 else TensorProto.INT32
    nodes.append(helper.make_node("Cast", [ids], [CLASS_MAP_NAME], name=PREFIX + "classes", to=to))
    return nodes, inits


def _io(spec: E2ESpec) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    prof = spec.profile
    n = "batch" if prof.min[0] != prof.max[0] else prof.opt[0]
    k = max(1, spec.num_classes)
    h, w = FRAME_DIMS  # not the network's "height"/"width": those are the padded sizes
    frame = helper.make_tensor_value_info(E2E_INPUT_NAME, TensorProto.UINT8, [n, h, w, 3])
    to = TensorProto.UINT8 if spec.map_dtype == ClassDtype.UINT8 else TensorProto.INT32
    outs = [helper.make_tensor_value_info(CLASS_MAP_NAME, to, [n, h, w])]
    if spec.with_scores:
        outs.append(helper.make_tensor_value_info(E2E_SCORES_NAME, TensorProto.FLOAT, [n, k, h, w]))
    return [frame], outs


def build_e2e(network: onnx.ModelProto, spec: E2ESpec) -> onnx.ModelProto:
    """The end-to-end variant of ``network`` (see the module docstring). Raises ArtifactError when the network is not
    a segdeploy graph (input/output names) or the result does not pass the ONNX checker."""
    names_in = [i.name for i in network.graph.input]
    names_out = [o.name for o in network.graph.output]
    if names_in != [INPUT_NAME] or OUTPUT_NAME not in names_out:
        raise ArtifactError(f"an end-to-end variant wraps a segdeploy graph (input {INPUT_NAME!r}, output "
                            f"{OUTPUT_NAME!r}); this one has inputs {names_in} and outputs {names_out}")
    pre_nodes, pre_inits = _prefix(spec)
    suf_nodes, suf_inits = _suffix(spec)
    inputs, outputs = _io(spec)
    model = compose(network, inputs=inputs, outputs=outputs, prefix=pre_nodes, suffix=suf_nodes,
                    initializers=pre_inits + suf_inits, name=f"{network.graph.name or 'segdeploy'}_e2e")
    check(model)
    return model


def check(model: onnx.ModelProto) -> None:
    """``onnx.checker`` with ``full_check`` (types and shapes) when every node is a standard op, else the structural
    check (plugin nodes have no ONNX schema). Raises ArtifactError with the checker's first line."""
    standard = all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    try:
        onnx.checker.check_model(model, full_check=standard)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ArtifactError(f"the composed graph fails the ONNX checker: {str(e).strip().splitlines()[0][:300]}; "
                            "this is a segdeploy bug, please report it with the model") from None


def network_unchanged(network: onnx.ModelProto, composed: onnx.ModelProto) -> bool:
    """True when every node and initializer of ``network`` is in ``composed`` byte for byte, in order (so Q/DQ
    placement, weights and scales are exactly the source graph's)."""
    nodes = [n.SerializeToString() for n in composed.graph.node]
    mine = [n.SerializeToString() for n in network.graph.node]
    start = next((i for i in range(len(nodes) - len(mine) + 1) if nodes[i:i + len(mine)] == mine), None)
    inits = {i.name: i.SerializeToString() for i in composed.graph.initializer}
    return start is not None and all(inits.get(i.name) == i.SerializeToString() for i in network.graph.initializer)
