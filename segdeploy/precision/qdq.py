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


_PlanEntry = tuple[object, list[int], "int | None"]  # (node, activation input indices, weight axis or None)


class _Graph:
    """What the placement rules look up in a graph: initializers, producers, constants."""

    def __init__(self, graph):
        self.inits = {t.name: t for t in graph.initializer}
        self.producers = _producers(graph)

    def is_const(self, t: str) -> bool:
        return t in self.inits or (t in self.producers and self.producers[t].op_type == "Constant")


def _plan_weighted(node, g: _Graph, options: QdqOptions) -> _PlanEntry | SkippedNode:
    """Conv/ConvTranspose/MatMul/Gemm: the activation per tensor and the weight per channel, or why not."""
    from onnx import numpy_helper

    op = node.op_type
    if len(node.input) < 2 or node.input[1] not in g.inits:
        if op in ("MatMul", "Gemm") and not g.is_const(node.input[0]) and not g.is_const(node.input[1]):
            return (node, [0, 1], None)  # activation x activation matmul: both inputs per-tensor
        return SkippedNode(node.name, op, "weight is not an initializer")
    w = numpy_helper.to_array(g.inits[node.input[1]])
    axis = _weight_axis(node, w)
    if axis is None:
        return SkippedNode(node.name, op, "no per-channel axis (grouped ConvTranspose or 1-D weight)")
    if op in ("Conv", "ConvTranspose") and options.min_channels:
        cin, cout = _conv_channels(node, w)
        if min(cin, cout) < options.min_channels:
            return SkippedNode(node.name, op, f"{cin}->{cout} channels < {options.min_channels} (ModelOpt rule)")
    return (node, [0] if not g.is_const(node.input[0]) else [], axis)


def _plan_residual(node, g: _Graph) -> _PlanEntry | None:
    """An Add fed by a Conv (optionally through BatchNormalization): Q/DQ on the skip branch only (the conv-side
    input fuses into the conv); None when it is not a residual pattern TensorRT fuses."""
    ins = list(node.input)
    if len(ins) != 2 or any(g.is_const(t) for t in ins):
        return None
    fused = [_feeds_from_conv(t, g.producers) for t in ins]
    if not any(fused):
        return None
    return (node, [1] if fused[0] else [0], None)


def _plan(model, options: QdqOptions) -> tuple[list[_PlanEntry], list[SkippedNode]]:
    """Decide, per node, which inputs get activation Q/DQ and whether the weight gets per-channel Q/DQ.

    Returns (plan, skipped): plan is a list of (node, [activation input indices], weight_axis or None).
    """
    g = _Graph(model.graph)
    excl = set(options.exclude)
    plan: list[_PlanEntry] = []
    skipped: list[SkippedNode] = []
    for node in model.graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            continue  # custom ops (TensorRT plugins) are never quantized
        if op in QDQ_WEIGHTED_OPS:
            entry = None if node.name in excl else _plan_weighted(node, g, options)
        elif op in QDQ_POOL_OPS and options.quantize_pooling:
            entry = None if node.name in excl else (node, [0], None)
        elif op == QDQ_RESIDUAL_OP and options.quantize_residual_add:
            entry = _plan_residual(node, g)
            if entry is None:
                continue  # not a residual pattern TensorRT fuses: leave it alone
            entry = None if node.name in excl else entry
        else:
            continue
        if entry is None:
            skipped.append(SkippedNode(node.name, op, "excluded by name"))
        elif isinstance(entry, SkippedNode):
            skipped.append(entry)
        else:
            plan.append(entry)
    return plan, skipped


def quantizable_nodes(model, options: QdqOptions | None = None) -> list[str]:
    """Names of the nodes :func:`quantize_qdq` would quantize (given ranges for all their inputs)."""
    options = options or QdqOptions()
    m = _onnx().ModelProto()
    m.CopyFrom(model)
    _name_nodes(m.graph)
    plan, _ = _plan(m, options)
    return [n.name for n, _, _ in plan]


class _Inserter:
    """Builds the Q/DQ pairs of one model: one shared pair per activation tensor and per (weight, axis), each
    inserted before its first consumer (graph order is topological, so that is before every consumer)."""

    def __init__(self, graph, amax: Mapping[str, float]):
        self.graph = graph
        self.amax = amax
        self.inits = {t.name: t for t in graph.initializer}
        self.new_inits: list = []
        self.before: dict[str, list] = {}  # node name -> Q/DQ nodes to insert before it
        self.act_dq: dict[str, str] = {}  # activation tensor -> its DQ output
        self.weight_dq: dict[tuple[str, int], str] = {}
        self.scales: dict[str, float] = {}

    def _pair(self, tensor: str, scale: np.ndarray, before: str, axis: int | None = None) -> str:
        """Scale/zero-point initializers and a QuantizeLinear -> DequantizeLinear pair on ``tensor``; the DQ output."""
        from onnx import helper, numpy_helper

        sname, zname = f"{tensor}_qdq_scale", f"{tensor}_qdq_zero_point"
        self.new_inits.append(numpy_helper.from_array(scale, sname))
        self.new_inits.append(numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), zname))
        qo, dqo = f"{tensor}_quantized", f"{tensor}_dequantized"
        kw = {} if axis is None else {"axis": axis}
        self.before.setdefault(before, []).extend([
            helper.make_node("QuantizeLinear", [tensor, sname, zname], [qo], name=f"{tensor}_QuantizeLinear", **kw),
            helper.make_node("DequantizeLinear", [qo, sname, zname], [dqo], name=f"{tensor}_DequantizeLinear", **kw),
        ])
        return dqo

    def activation(self, t: str, before: str) -> str:
        """The DQ output for activation ``t`` (per tensor, scale amax / 127); the caller checked the range."""
        if t not in self.act_dq:
            s = float(self.amax[t]) / INT8_MAX
            self.act_dq[t] = self._pair(t, np.array(s, dtype=np.float32), before)
            self.scales[t] = s
        return self.act_dq[t]

    def weight(self, node, axis: int, before: str) -> str:
        """The DQ output for ``node``'s weight, per channel on ``axis`` (scale max |w| / 127 per channel)."""
        from onnx import numpy_helper

        wname = node.input[1]
        if (wname, axis) not in self.weight_dq:
            w = numpy_helper.to_array(self.inits[wname]).astype(np.float32)
            red = tuple(i for i in range(w.ndim) if i != axis)
            wmax = np.abs(w).max(axis=red) if red else np.abs(w)
            scale = np.where(wmax > 0, wmax / INT8_MAX, 1.0).astype(np.float32)
            self.weight_dq[(wname, axis)] = self._pair(wname, scale, before, axis)
        return self.weight_dq[(wname, axis)]

    def splice(self) -> None:
        """Put the new nodes before their consumers and the new initializers into the graph."""
        nodes = []
        for n in self.graph.node:
            nodes.extend(self.before.get(n.name, []))
            nodes.append(n)
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.new_inits)


def _range_problem(node, act_idx: list[int], amax: Mapping[str, float]) -> str | None:
    """Why ``node`` cannot be quantized with these ranges (a missing, zero or non-finite one), or None."""
    missing = [node.input[i] for i in act_idx if amax.get(node.input[i]) is None]
    if missing:
        return f"no calibrated range for {', '.join(missing)}"
    bad = [node.input[i] for i in act_idx if not (np.isfinite(amax[node.input[i]]) and amax[node.input[i]] > 0)]
    if bad:
        return f"zero or non-finite range for {', '.join(bad)}"
    return None


def quantize_qdq(model, amax: Mapping[str, float], options: QdqOptions | None = None) -> QdqResult:
    """Return a copy of ``model`` with Q/DQ inserted per the TensorRT rules.

    ``amax`` maps activation tensor names to their calibrated absolute maximum (scale = amax / 127).
    A quantizable node whose activation input has no range (or a non-finite/zero one) is left in float
    and listed in ``skipped``. Raises ArtifactError when the opset is below 13 and UsageError when nothing
    at all could be quantized (the caller should then export without --int8).
    """
    options = options or QdqOptions()
    if _opset(model) < MIN_OPSET:
        raise ArtifactError(
            f"ONNX opset {_opset(model)} is too old for per-channel Q/DQ (needs >= {MIN_OPSET}); re-export with a newer opset"
        )
    m = _onnx().ModelProto()
    m.CopyFrom(model)
    _name_nodes(m.graph)
    plan, skipped = _plan(m, options)
    ranges = dict(amax)  # a quantized pool's output takes its input's range (below)
    ins = _Inserter(m.graph, ranges)
    quantized: list[str] = []
    for node, act_idx, axis in plan:
        problem = _range_problem(node, act_idx, ranges)
        if problem is not None:
            skipped.append(SkippedNode(node.name, node.op_type, problem))
            continue
        source = node.input[0]
        for i in act_idx:
            node.input[i] = ins.activation(node.input[i], node.name)
        if axis is not None:
            node.input[1] = ins.weight(node, axis, node.name)
        quantized.append(node.name)
        if node.op_type in QDQ_POOL_OPS and len(node.output) == 1:
            # TensorRT runs a quantized pool in int8 at its input's scale (a max or mean of values on one grid stays
            # within the input's range); a Q/DQ with the output's own, smaller amax on the next consumer would cost a
            # requantize per pool, so the pool output shares the input's scale (graph order is topological: every
            # consumer of the output comes after the pool)
            ranges[node.output[0]] = ranges[source]
    if not quantized:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3]) or "no Conv/ConvTranspose/MatMul/Gemm/pooling"
        raise UsageError(
            f"the model has no quantizable layer ({reasons}); INT8 would change nothing -- export without --int8 or use --fp16"
        )
    ins.splice()
    return QdqResult(model=m, quantized=quantized, skipped=skipped, activation_scales=ins.scales)


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


def _check_qdq_node(n, g: _Graph, consumers: Mapping[str, list], outputs: set[str]) -> list[Violation]:
    """The rules of one QuantizeLinear/DequantizeLinear: constant positive scale, int8 zero point 0, pairing."""
    out: list[Violation] = []
    scale = _const_value(n.input[1], g.inits, g.producers) if len(n.input) > 1 else None
    if scale is None:
        out.append(Violation("scale", n.name, "scale is not a constant"))
    elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        out.append(Violation("scale", n.name, "scale has a zero, negative or non-finite value"))
    zp = _const_value(n.input[2], g.inits, g.producers) if len(n.input) > 2 and n.input[2] else None
    if zp is None:
        if n.op_type == "QuantizeLinear":
            out.append(Violation("zero_point", n.name, "no zero point: QuantizeLinear then outputs uint8; use int8 zero 0"))
        else:
            src = _const_value(n.input[0], g.inits, g.producers)
            if src is not None and src.dtype not in (np.int8, np.int32):  # int32: reported as a bias where consumed
                out.append(Violation("dtype", n.name, f"dequantizes {src.dtype}, TensorRT needs int8"))
    else:
        if zp.dtype not in (np.int8, np.int32):  # int32 DQ (bias): reported where it is consumed
            out.append(Violation("dtype", n.name, f"zero point is {zp.dtype}; TensorRT needs int8"))
        if np.any(zp != 0):
            out.append(Violation("zero_point", n.name, "non-zero zero point; TensorRT needs symmetric quantization"))
    if n.op_type == "QuantizeLinear":
        bad = [c for c in consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
        if bad or n.output[0] in outputs:
            who = ", ".join(c.op_type for c in bad) or "a graph output"
            out.append(Violation("pairing", n.name, f"quantized tensor feeds {who}, not a DequantizeLinear"))
    return out


def _dq_of(t: str, g: _Graph):
    p = g.producers.get(t)
    return p if p is not None and p.op_type == "DequantizeLinear" else None


def _check_weight(n, g: _Graph) -> list[Violation]:
    """A constant weight of Conv/ConvTranspose/Gemm/MatMul behind Q/DQ is quantized per output channel."""
    dq = _dq_of(n.input[1], g)
    if dq is None:
        return []
    q = g.producers.get(dq.input[0])
    src = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]
    w = _const_value(src, g.inits, g.producers)
    if w is None:
        return []  # activation x activation: per-tensor is right
    scale = _const_value(dq.input[1], g.inits, g.producers)
    axis = int(_attr(dq, "axis", 1))
    want = _weight_axis(n, w)
    outc = w.shape[want] if want is not None else 1
    if scale is not None and scale.size == 1 and outc > 1:
        return [Violation("per_channel_weight", n.name, "weight quantized per tensor; use per-channel scales")]
    if scale is not None and scale.size > 1 and want is not None and axis % w.ndim != want:
        return [Violation("per_channel_weight", n.name, f"weight quantized on axis {axis}, expected {want}")]
    return []


def _check_consumer(n, g: _Graph) -> list[Violation]:
    """The rules of an op fed by Q/DQ: untouched ops, float bias, per-channel weights."""
    op = n.op_type
    out: list[Violation] = []
    if op in QDQ_UNTOUCHED_OPS:
        for t in n.input:
            if t and _dq_of(t, g) is not None:
                out.append(Violation("untouched_op", n.name, f"{op} input {t} comes from Q/DQ; leave {op} unquantized"))
    if op in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2 and n.input[2]:
        dq = _dq_of(n.input[2], g)
        if dq is not None:
            src = _const_value(dq.input[0], g.inits, g.producers)
            zp = _const_value(dq.input[2], g.inits, g.producers) if len(dq.input) > 2 and dq.input[2] else None
            if (src is not None and src.dtype == np.int32) or (zp is not None and zp.dtype == np.int32):
                out.append(Violation("int32_bias", n.name, "bias is INT32 from DequantizeLinear; keep bias float"))
    if op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(n.input) > 1:
        out += _check_weight(n, g)
    return out


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
    g = _Graph(m.graph)
    consumers = _consumers(m.graph)
    outputs = {o.name for o in m.graph.output}
    out: list[Violation] = []
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            out += _check_qdq_node(n, g, consumers, outputs)
    for n in m.graph.node:
        out += _check_consumer(n, g)
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
