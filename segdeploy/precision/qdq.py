"""INT8 explicit quantization: insert Q/DQ following TensorRT's rules, and check a graph against them.

Placement rules (what TensorRT fuses well, see docs/precision.md):

* symmetric int8, zero point 0 everywhere; activations per-tensor, weights per-channel
  (axis 0 for Conv/Gemm(transB=1), axis 1 for ConvTranspose and MatMul/Gemm(transB=0) weights);
* bias is never quantized (TensorRT rejects an INT32 bias coming out of Q/DQ);
* Q/DQ goes on the *inputs* of quantizable ops: Conv, ConvTranspose, MatMul, Gemm, MaxPool,
  AveragePool, GlobalAveragePool, GlobalMaxPool, and the residual input of an ``Add`` whose other input
  comes from a Conv/ConvTranspose (optionally through BatchNormalization): TensorRT fuses that conv with
  the add, so only the skip branch needs Q/DQ (ModelOpt does the same);
* Resize, Softmax, ArgMax, Concat and normalisation layers are never touched: they run in the
  non-quantized precision the graph says;
* like NVIDIA ModelOpt, Conv/ConvTranspose with fewer than ``min_channels`` (16) input or output channels
  are left in float: a 3-channel stem or a K-class head gains nothing from int8 and is the most
  sensitive layer; grouped ConvTranspose is left in float too (per-channel axis would not be the
  output channel);
* nodes named in ``exclude`` stay in float (the accuracy budget uses this).

The op sets are defined once in :mod:`segdeploy.vocab` (``QDQ_*``, ``QUANTIZABLE_OPS``); calibration's
``quantizable_inputs`` reads the same ones.

Weights keep FP32 initializers followed by a QuantizeLinear/DequantizeLinear pair (the form TensorRT
8.6, 10.x and 11 all constant-fold; ORT's ``AddQDQPairToWeight``), so the same ONNX serves every version.

Public API:
    quantize_qdq(model, amax, options) -> QdqResult     (model: onnx.ModelProto, amax: {tensor: float})
    quantizable_nodes(model, options) -> list[str]      (names the placer would quantize, ignoring ranges)
    check_trt_qdq(model) -> list[Violation]             (empty list = conforms)
    assert_trt_qdq(model)                               (raises ArtifactError on the first violation)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.vocab import (
    QDQ_POOL_OPS,
    QDQ_RESIDUAL_OP,
    QDQ_UNTOUCHED_OPS,
    QDQ_WEIGHTED_OPS,
)

INT8_MAX = 127.0
MIN_OPSET = 13  # per-channel QuantizeLinear (axis attribute)


@dataclass(frozen=True)
class QdqOptions:
    """How to place Q/DQ.

    exclude: node names kept in float. min_channels: convs with fewer input or output channels stay
    float (0 disables). quantize_pooling / quantize_residual_add: include those op kinds.
    """

    exclude: tuple[str, ...] = ()
    min_channels: int = 16
    quantize_pooling: bool = True
    quantize_residual_add: bool = True

    def __post_init__(self) -> None:
        if self.min_channels < 0:
            raise UsageError(f"min_channels must be >= 0, got {self.min_channels}")


@dataclass(frozen=True)
class SkippedNode:
    name: str
    op_type: str
    reason: str


@dataclass
class QdqResult:
    """The quantized model plus what was done: quantized node names, skipped nodes and why."""

    model: object  # onnx.ModelProto
    quantized: list[str] = field(default_factory=list)
    skipped: list[SkippedNode] = field(default_factory=list)
    activation_scales: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


# ----------------------------------------------------------------------------------------------- helpers


def _onnx():
    import onnx

    return onnx


def _opset(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _name_nodes(graph) -> None:
    """Give every unnamed node a stable unique name (exclusion lists refer to node names)."""
    seen: set[str] = set()
    for i, n in enumerate(graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}" if f"{n.op_type}_{i}" not in seen else f"{n.op_type}_{i}_{len(seen)}"
        seen.add(n.name)


def _producers(graph) -> dict[str, object]:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                out.setdefault(i, []).append(n)
    return out


def _weight_axis(node, weight: np.ndarray) -> int | None:
    """Per-channel axis of a node's weight input (index 1), or None when it cannot be per-channel."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1 if int(_attr(node, "group", 1)) == 1 else None
    if node.op_type == "Gemm":
        return 0 if int(_attr(node, "transB", 0)) else 1
    if node.op_type == "MatMul":
        return weight.ndim - 1 if weight.ndim >= 2 else None
    return None


def _conv_channels(node, weight: np.ndarray) -> tuple[int, int]:
    """(in_channels, out_channels) of a Conv/ConvTranspose from its weight and group."""
    g = int(_attr(node, "group", 1))
    if node.op_type == "Conv":
        return weight.shape[1] * g, weight.shape[0]
    return weight.shape[0], weight.shape[1] * g


def _feeds_from_conv(tensor: str, producers: Mapping[str, object]) -> bool:
    p = producers.get(tensor)
    if p is not None and p.op_type == "BatchNormalization":
        p = producers.get(p.input[0])
    return p is not None and p.op_type in ("Conv", "ConvTranspose")


# ----------------------------------------------------------------------------------------------- placement


def _plan(model, options: QdqOptions):
    """Decide, per node, which inputs get activation Q/DQ and whether the weight gets per-channel Q/DQ.

    Returns (plan, skipped): plan is a list of (node, [activation input indices], weight_axis or None).
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = _producers(graph)
    excl = set(options.exclude)
    plan: list[tuple[object, list[int], int | None]] = []
    skipped: list[SkippedNode] = []

    from onnx import numpy_helper

    def is_const(t: str) -> bool:
        return t in inits or (t in producers and producers[t].op_type == "Constant")

    for node in graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            continue  # custom ops (TensorRT plugins) are never quantized
        if op in QDQ_WEIGHTED_OPS:
            if node.name in excl:
                skipped.append(SkippedNode(node.name, op, "excluded by name"))
                continue
            if len(node.input) < 2 or node.input[1] not in inits:
                if op in ("MatMul", "Gemm") and not is_const(node.input[0]) and not is_const(node.input[1]):
                    # activation x activation matmul: both inputs per-tensor
                    plan.append((node, [0, 1], None))
                else:
                    skipped.append(SkippedNode(node.name, op, "weight is not an initializer"))
                continue
            w = numpy_helper.to_array(inits[node.input[1]])
            axis = _weight_axis(node, w)
            if axis is None:
                skipped.append(SkippedNode(node.name, op, "no per-channel axis (grouped ConvTranspose or 1-D weight)"))
                continue
            if op in ("Conv", "ConvTranspose") and options.min_channels:
                cin, cout = _conv_channels(node, w)
                if min(cin, cout) < options.min_channels:
                    skipped.append(
                        SkippedNode(node.name, op, f"{cin}->{cout} channels < {options.min_channels} (ModelOpt rule)")
                    )
                    continue
            act = [0] if not is_const(node.input[0]) else []
            plan.append((node, act, axis))
        elif op in QDQ_POOL_OPS and options.quantize_pooling:
            if node.name in excl:
                skipped.append(SkippedNode(node.name, op, "excluded by name"))
                continue
            plan.append((node, [0], None))
        elif op == QDQ_RESIDUAL_OP and options.quantize_residual_add:
            ins = list(node.input)
            if len(ins) != 2 or any(is_const(t) for t in ins):
                continue
            fused = [_feeds_from_conv(t, producers) for t in ins]
            if not any(fused):
                continue  # not a residual pattern TensorRT fuses: leave it alone
            if node.name in excl:
                skipped.append(SkippedNode(node.name, op, "excluded by name"))
                continue
            # Q/DQ on the skip branch only; the conv-side input fuses into the conv
            idx = [1] if fused[0] else [0]
            plan.append((node, idx, None))
    return plan, skipped


def quantizable_nodes(model, options: QdqOptions | None = None) -> list[str]:
    """Names of the nodes :func:`quantize_qdq` would quantize (given ranges for all their inputs)."""
    options = options or QdqOptions()
    m = _onnx().ModelProto()
    m.CopyFrom(model)
    _name_nodes(m.graph)
    plan, _ = _plan(m, options)
    return [n.name for n, _, _ in plan]


def quantize_qdq(model, amax: Mapping[str, float], options: QdqOptions | None = None) -> QdqResult:
    """Return a copy of ``model`` with Q/DQ inserted per the TensorRT rules.

    ``amax`` maps activation tensor names to their calibrated absolute maximum (scale = amax / 127).
    A quantizable node whose activation input has no range (or a non-finite/zero one) is left in float
    and listed in ``skipped``. Raises ArtifactError when the opset is below 13 and UsageError when nothing
    at all could be quantized (the caller should then export without --int8).
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper

    options = options or QdqOptions()
    if _opset(model) < MIN_OPSET:
        raise ArtifactError(
            f"ONNX opset {_opset(model)} is too old for per-channel Q/DQ (needs >= {MIN_OPSET}); re-export with a newer opset"
        )
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    _name_nodes(graph)
    plan, skipped = _plan(m, options)
    inits = {t.name: t for t in graph.initializer}

    new_inits: list = []
    act_dq: dict[str, str] = {}  # activation tensor -> its DQ output (one shared pair per tensor)
    scales: dict[str, float] = {}
    new_nodes_before: dict[str, list] = {}  # node name -> Q/DQ nodes to insert before it
    quantized: list[str] = []
    w_done: dict[tuple[str, int], str] = {}

    def act_pair(t: str, before: str) -> str | None:
        if t in act_dq:
            return act_dq[t]
        a = amax.get(t)
        if a is None or not np.isfinite(a) or a <= 0:
            return None
        s = float(a) / INT8_MAX
        sname, zname = f"{t}_qdq_scale", f"{t}_qdq_zero_point"
        new_inits.append(numpy_helper.from_array(np.array(s, dtype=np.float32), sname))
        new_inits.append(numpy_helper.from_array(np.array(0, dtype=np.int8), zname))
        qo, dqo = f"{t}_quantized", f"{t}_dequantized"
        new_nodes_before.setdefault(before, []).extend(
            [
                helper.make_node("QuantizeLinear", [t, sname, zname], [qo], name=f"{t}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [qo, sname, zname], [dqo], name=f"{t}_DequantizeLinear"),
            ]
        )
        act_dq[t] = dqo
        scales[t] = s
        return dqo

    def weight_pair(node, axis: int, before: str) -> str:
        wname = node.input[1]
        if (wname, axis) in w_done:
            return w_done[(wname, axis)]
        w = numpy_helper.to_array(inits[wname]).astype(np.float32)
        red = tuple(i for i in range(w.ndim) if i != axis)
        wmax = np.abs(w).max(axis=red) if red else np.abs(w)
        s = np.where(wmax > 0, wmax / INT8_MAX, 1.0).astype(np.float32)
        sname, zname = f"{wname}_qdq_scale", f"{wname}_qdq_zero_point"
        new_inits.append(numpy_helper.from_array(s, sname))
        new_inits.append(numpy_helper.from_array(np.zeros(s.shape, dtype=np.int8), zname))
        qo, dqo = f"{wname}_quantized", f"{wname}_dequantized"
        new_nodes_before.setdefault(before, []).extend(
            [
                helper.make_node("QuantizeLinear", [wname, sname, zname], [qo], name=f"{wname}_QuantizeLinear", axis=axis),
                helper.make_node("DequantizeLinear", [qo, sname, zname], [dqo], name=f"{wname}_DequantizeLinear", axis=axis),
            ]
        )
        w_done[(wname, axis)] = dqo
        return dqo

    for node, act_idx, axis in plan:
        missing = [node.input[i] for i in act_idx if amax.get(node.input[i]) is None]
        if missing:
            skipped.append(SkippedNode(node.name, node.op_type, f"no calibrated range for {', '.join(missing)}"))
            continue
        bad = [node.input[i] for i in act_idx if not (np.isfinite(amax[node.input[i]]) and amax[node.input[i]] > 0)]
        if bad:
            skipped.append(SkippedNode(node.name, node.op_type, f"zero or non-finite range for {', '.join(bad)}"))
            continue
        for i in act_idx:
            node.input[i] = act_pair(node.input[i], node.name)
        if axis is not None:
            node.input[1] = weight_pair(node, axis, node.name)
        quantized.append(node.name)

    if not quantized:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3]) or "no Conv/ConvTranspose/MatMul/Gemm/pooling"
        raise UsageError(
            f"the model has no quantizable layer ({reasons}); INT8 would change nothing -- export without --int8 or use --fp16"
        )

    nodes = []
    for n in graph.node:
        nodes.extend(new_nodes_before.get(n.name, []))
        nodes.append(n)
    # a Q/DQ pair shared by several consumers must come before the first of them: inserting before the
    # first consumer in graph order (the loop above) already guarantees it, since graph.node is topological.
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    return QdqResult(model=m, quantized=quantized, skipped=skipped, activation_scales=scales)


# ----------------------------------------------------------------------------------------------- checker


def _const_value(t: str, inits: Mapping, producers: Mapping):
    from onnx import numpy_helper

    if t in inits:
        return numpy_helper.to_array(inits[t])
    p = producers.get(t)
    if p is not None and p.op_type == "Constant":
        v = _attr(p, "value")
        return numpy_helper.to_array(v) if v is not None else None
    return None


def check_trt_qdq(model) -> list[Violation]:
    """Check a Q/DQ ONNX against TensorRT's explicit-quantization rules; return every violation.

    Rules checked: (zero_point) every Q/DQ has an int8 zero point equal to 0 (a missing one means uint8);
    (scale) scales are constant, finite and > 0; (pairing) every QuantizeLinear output feeds only
    DequantizeLinear nodes; (int32_bias) no bias input of Conv/ConvTranspose/Gemm comes from an int32
    DequantizeLinear; (per_channel_weight) constant weights of Conv/ConvTranspose/Gemm/MatMul are quantized
    per channel on the output-channel axis (0 for Conv, 1 for ConvTranspose); (untouched_op) Resize,
    Softmax, ArgMax, Concat and normalisation layers have no DequantizeLinear input; (dtype) only int8
    quantization (no uint8/int16/int4/fp8).
    """
    m = _onnx().ModelProto()
    m.CopyFrom(model)
    _name_nodes(m.graph)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producers = _producers(g)
    consumers = _consumers(g)
    out: list[Violation] = []

    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = _const_value(n.input[1], inits, producers) if len(n.input) > 1 else None
        if scale is None:
            out.append(Violation("scale", n.name, "scale is not a constant"))
        elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            out.append(Violation("scale", n.name, "scale has a zero, negative or non-finite value"))
        zp = _const_value(n.input[2], inits, producers) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            if n.op_type == "QuantizeLinear":
                out.append(Violation("zero_point", n.name, "no zero point: QuantizeLinear then outputs uint8; use int8 zero 0"))
            else:
                src = _const_value(n.input[0], inits, producers)
                if src is not None and src.dtype == np.int32:
                    pass  # reported as int32 bias below if it feeds a bias
                elif src is not None and src.dtype != np.int8:
                    out.append(Violation("dtype", n.name, f"dequantizes {src.dtype}, TensorRT needs int8"))
        else:
            if zp.dtype == np.int32:
                pass  # int32 DQ (bias): reported where it is consumed
            elif zp.dtype != np.int8:
                out.append(Violation("dtype", n.name, f"zero point is {zp.dtype}; TensorRT needs int8"))
            if np.any(zp != 0):
                out.append(Violation("zero_point", n.name, "non-zero zero point; TensorRT needs symmetric quantization"))
        if n.op_type == "QuantizeLinear":
            bad = [c for c in consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
            if bad or n.output[0] in {o.name for o in g.output}:
                who = ", ".join(c.op_type for c in bad) or "a graph output"
                out.append(Violation("pairing", n.name, f"quantized tensor feeds {who}, not a DequantizeLinear"))

    def dq_of(t: str):
        p = producers.get(t)
        return p if p is not None and p.op_type == "DequantizeLinear" else None

    for n in g.node:
        op = n.op_type
        if op in QDQ_UNTOUCHED_OPS:
            for t in n.input:
                if t and dq_of(t) is not None:
                    out.append(Violation("untouched_op", n.name, f"{op} input {t} comes from Q/DQ; leave {op} unquantized"))
        if op in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2 and n.input[2]:
            dq = dq_of(n.input[2])
            if dq is not None:
                src = _const_value(dq.input[0], inits, producers)
                zp = _const_value(dq.input[2], inits, producers) if len(dq.input) > 2 and dq.input[2] else None
                if (src is not None and src.dtype == np.int32) or (zp is not None and zp.dtype == np.int32):
                    out.append(Violation("int32_bias", n.name, "bias is INT32 from DequantizeLinear; keep bias float"))
        if op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(n.input) > 1:
            dq = dq_of(n.input[1])
            if dq is None:
                continue
            src = dq.input[0]
            q = producers.get(src)
            w = _const_value(q.input[0], inits, producers) if q is not None and q.op_type == "QuantizeLinear" else _const_value(src, inits, producers)
            if w is None:
                continue  # activation x activation: per-tensor is right
            scale = _const_value(dq.input[1], inits, producers)
            axis = int(_attr(dq, "axis", 1))
            want = _weight_axis(n, w)
            outc = w.shape[want] if want is not None else 1
            if scale is not None and scale.size == 1 and outc > 1:
                out.append(Violation("per_channel_weight", n.name, "weight quantized per tensor; use per-channel scales"))
            elif scale is not None and scale.size > 1 and want is not None and axis % w.ndim != want:
                out.append(Violation("per_channel_weight", n.name, f"weight quantized on axis {axis}, expected {want}"))
    return out


def assert_trt_qdq(model) -> None:
    """Raise ArtifactError naming the first violation (and how many there are) when the graph does not conform."""
    v = check_trt_qdq(model)
    if v:
        raise ArtifactError(
            f"Q/DQ graph breaks TensorRT rules ({len(v)} violation(s)), first: {v[0]}; re-run quantization with segdeploy"
        )


def summarize_violations(violations: Iterable[Violation]) -> dict[str, int]:
    """Count violations per rule (for reports and the decision table)."""
    out: dict[str, int] = {}
    for v in violations:
        out[v.rule] = out.get(v.rule, 0) + 1
    return out
