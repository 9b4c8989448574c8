"""Strongly-typed FP16 ONNX (what TensorRT 11 builds as typed; 8.6/10.x build it with the FP16 flag).

Contract: :func:`convert_fp16` takes an FP32 ``onnx.ModelProto`` and returns a copy where every float32
tensor inside the graph is float16, except

* the model's float inputs and outputs, which stay float32 (a ``Cast`` sits at each boundary), unless
  ``keep_io_types=False``;
* nodes kept in FP32, each with the reason, listed in the result:
  - op types at overflow/precision risk (``keep_op_types``, default: reductions, normalisations,
    softmax, Exp/Pow -- see ``DEFAULT_KEEP_OPS``),
  - nodes whose float input or output was observed beyond the FP16 range (``|x| > overflow_threshold``,
    default 65504, from the calibration statistics' absmax) or whose float constant input is,
  - nodes named in ``keep_nodes``,
  - control-flow nodes (If/Loop/Scan: their subgraphs are not converted) and custom-domain nodes
    (TensorRT plugins: their type constraints are unknown to ONNX);
  a kept node reads float32 (a ``Cast`` is inserted where its input is float16) and its outputs are cast
  back to float16 for the float16 consumers;
* inputs that ONNX requires to be float32 (Resize/Upsample ``scales``).

``Cast(to=FLOAT)`` and ``ConstantOfShape``/``Constant`` float values in the float16 part become float16.
The result is validated by ONNX strict type inference; a graph it cannot type raises ArtifactError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from segdeploy.errors import ArtifactError, UsageError

FP16_MAX = 65504.0
DEFAULT_KEEP_OPS: tuple[str, ...] = (
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceMean",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceProd",
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "LpNormalization",
    "Softmax",
    "LogSoftmax",
    "Exp",
    "Pow",
)
_CONTROL_FLOW = ("If", "Loop", "Scan")
# (op_type, input index) that ONNX types as float32 only
_FP32_SLOTS = {("Resize", 2), ("Upsample", 1)}
# ops that accept any input type: never cast their inputs
_ANY_INPUT = {"Shape", "Size", "Cast", "CastLike"}


@dataclass(frozen=True)
class Fp16Options:
    keep_op_types: tuple[str, ...] = DEFAULT_KEEP_OPS
    keep_nodes: tuple[str, ...] = ()
    overflow_threshold: float = FP16_MAX
    keep_io_types: bool = True

    def __post_init__(self) -> None:
        if not (0 < self.overflow_threshold <= FP16_MAX):
            raise UsageError(f"overflow threshold must be in (0, {FP16_MAX}], got {self.overflow_threshold}")


@dataclass(frozen=True)
class KeptNode:
    name: str
    op_type: str
    reason: str


@dataclass
class Fp16Result:
    model: object  # onnx.ModelProto
    kept: list[KeptNode] = field(default_factory=list)
    casts_inserted: int = 0

    def kept_report(self) -> list[dict]:
        return [{"node": k.name, "op": k.op_type, "reason": k.reason} for k in self.kept]


def _types(model) -> dict[str, int]:
    import onnx

    try:
        inf = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds
        raise ArtifactError(f"cannot infer tensor types of the ONNX model ({e}); re-export it with segdeploy export") from None
    t: dict[str, int] = {}
    for vi in list(inf.graph.input) + list(inf.graph.output) + list(inf.graph.value_info):
        t[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        t[init.name] = init.data_type
    return t


@dataclass
class _Graph:
    """What the conversion steps share: the graph, tensor types, initializers, consumers, kept nodes."""

    g: object
    types: dict[str, int]
    inits: dict[str, object]
    options: Fp16Options
    kept: dict[str, KeptNode] = field(default_factory=dict)
    consumers: dict[str, list] = field(default_factory=dict)
    home: dict[str, int] = field(default_factory=dict)
    fp16_copy: set[str] = field(default_factory=set)

    def is_float(self, t: str) -> bool:
        from onnx import TensorProto

        return bool(t) and self.types.get(t) == TensorProto.FLOAT

    def node_prec(self, n) -> int:
        from onnx import TensorProto

        return TensorProto.FLOAT if n.name in self.kept else TensorProto.FLOAT16

    def slot_prec(self, n, i) -> int | None:
        from onnx import TensorProto

        if n.op_type in _ANY_INPUT:
            return None
        if (n.op_type, i) in _FP32_SLOTS:
            return TensorProto.FLOAT
        return self.node_prec(n)


def _constant_absmax(g) -> dict[str, float]:
    from onnx import TensorProto, numpy_helper

    out: dict[str, float] = {}
    for n in g.node:  # float constants beyond the FP16 range make their consumers FP32 too
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value" \
                and n.attribute[0].t.data_type == TensorProto.FLOAT:
            v = numpy_helper.to_array(n.attribute[0].t)
            if v.size:
                out[n.output[0]] = float(np.abs(v).max())
    return out


def _choose_kept(st: _Graph, absmax: Mapping[str, float]) -> None:
    """Step 1: which nodes stay FP32, each with the reason."""
    from onnx import numpy_helper

    const_absmax = _constant_absmax(st.g)
    keep_ops, keep_names = set(st.options.keep_op_types), set(st.options.keep_nodes)
    for n in st.g.node:
        reason = None
        if n.op_type == "Constant":
            continue  # a constant follows its consumers (step 3)
        if n.op_type in _CONTROL_FLOW:
            reason = "control flow (subgraphs are not converted)"
        elif n.domain not in ("", "ai.onnx"):
            reason = f"custom op {n.domain}::{n.op_type} (plugin) kept FP32"
        elif n.name in keep_names:
            reason = "kept by name"
        elif n.op_type in keep_ops:
            reason = f"{n.op_type} kept in FP32 (reduction/normalisation/exp)"
        else:
            for t in list(n.input) + list(n.output):
                if not st.is_float(t):
                    continue
                a = absmax.get(t, const_absmax.get(t))
                if a is None and t in st.inits:
                    init = st.inits[t]
                    a = float(np.abs(numpy_helper.to_array(init)).max()) if init.dims and np.prod(init.dims) else None
                if a is not None and a > st.options.overflow_threshold:
                    reason = f"|{t}| reaches {a:.4g} > {st.options.overflow_threshold:g} (FP16 overflow)"
                    break
        if reason:
            st.kept[n.name] = KeptNode(n.name, n.op_type, reason)


def _assign_homes(st: _Graph) -> None:
    """Steps 2-3: the precision every float tensor lives in; initializers, constants, casts and attributes retyped."""
    import onnx
    from onnx import TensorProto, numpy_helper

    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    g = st.g
    for n in g.node:
        for i, t in enumerate(n.input):
            if st.is_float(t):
                st.consumers.setdefault(t, []).append((n, i))
    for inp in g.input:
        if st.is_float(inp.name) and inp.name not in st.inits:
            st.home[inp.name] = F32 if st.options.keep_io_types else F16
    new_inits = []
    for name, init in st.inits.items():
        if init.data_type != F32:
            continue
        needs = {st.slot_prec(n, i) for n, i in st.consumers.get(name, [])} - {None}
        arr = numpy_helper.to_array(init)
        if needs == {F16} or (not needs):
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name))
            st.home[name] = F16
        else:
            st.home[name] = F32
            if F16 in needs:  # also an FP16 copy, so no runtime Cast on a constant
                new_inits.append(numpy_helper.from_array(arr.astype(np.float16), name + "_fp16"))
    g.initializer.extend(new_inits)
    st.fp16_copy = {t.name[: -len("_fp16")] for t in new_inits}

    def to16(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for n in g.node:
        p = st.node_prec(n)
        if n.op_type == "Constant" and st.is_float(n.output[0]):
            needs = {st.slot_prec(c, i) for c, i in st.consumers.get(n.output[0], [])} - {None}
            p = F32 if needs == {F32} or n.name in st.kept else F16
            if p == F16:
                for a in n.attribute:
                    if a.name == "value":
                        a.t.CopyFrom(to16(a.t))
        elif n.op_type == "Cast" and p == F16:
            for a in n.attribute:
                if a.name == "to" and a.i == F32:
                    a.i = F16
        elif n.op_type == "ConstantOfShape" and p == F16:
            values = [a for a in n.attribute if a.name == "value"]
            if not values:  # no value: a float32 zero by ONNX's default (dynamo's zeros for MaxUnpool's ScatterND)
                n.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))
            for a in values:
                if a.t.data_type == F32:
                    a.t.CopyFrom(to16(a.t))
        elif p == F16:
            for a in n.attribute:
                if a.name in ("dtype", "to") and a.type == onnx.AttributeProto.INT and a.i == F32:
                    a.i = F16
        for o in n.output:
            if st.is_float(o):
                st.home[o] = p


def _insert_casts(st: _Graph) -> tuple[list, int]:
    """Step 4: a Cast wherever a consumer needs another precision than the tensor's home -> (nodes, count)."""
    from onnx import TensorProto, helper

    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    casts: dict[tuple[str, int], str] = {}
    insert_before: dict[str, list] = {}
    count = 0
    for t, uses in st.consumers.items():
        for n, i in uses:
            want = st.slot_prec(n, i)
            have = st.home.get(t, F32)
            if want is None or want == have:
                continue
            if t in st.fp16_copy and want == F16:
                n.input[i] = t + "_fp16"
                continue
            key = (t, want)
            if key not in casts:
                out = f"{t}_to_{'fp16' if want == F16 else 'fp32'}"
                insert_before.setdefault(n.name, []).append(helper.make_node("Cast", [t], [out], name=out + "_Cast", to=want))
                casts[key] = out
                count += 1
            n.input[i] = casts[key]
    nodes = []
    for n in st.g.node:  # graph inputs are available from the start, so a Cast before the first consumer is valid
        nodes.extend(insert_before.get(n.name, []))
        nodes.append(n)
    return nodes, count


def _fix_boundaries(st: _Graph, nodes: list) -> tuple[list, int]:
    """Step 5: float outputs computed in FP16 get a Cast back to FP32 (keep_io_types), or FP16 I/O types."""
    from onnx import TensorProto, helper

    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    g = st.g
    tail, count = [], 0
    for o in g.output:
        if st.is_float(o.name) and st.home.get(o.name) == F16:
            if st.options.keep_io_types:
                internal = o.name + "_fp16"
                for n in nodes:
                    for j, x in enumerate(n.output):
                        if x == o.name:
                            n.output[j] = internal
                    for j, x in enumerate(n.input):
                        if x == o.name:
                            n.input[j] = internal
                tail.append(helper.make_node("Cast", [internal], [o.name], name=o.name + "_to_fp32_Cast", to=F32))
                count += 1
            else:
                o.type.tensor_type.elem_type = F16
    if not st.options.keep_io_types:
        for inp in g.input:
            if st.is_float(inp.name) and inp.name not in st.inits:
                inp.type.tensor_type.elem_type = F16
    return nodes + tail, count


def convert_fp16(model, absmax: Mapping[str, float] | None = None, options: Fp16Options | None = None) -> Fp16Result:
    """Convert ``model`` to strongly-typed FP16 (see module docstring). ``absmax``: tensor -> observed max |x|."""
    import onnx
    from onnx import TensorProto

    from segdeploy.precision.qdq import _name_nodes

    options = options or Fp16Options()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        raise UsageError("the model already has Q/DQ nodes; convert the FP32 ONNX to FP16, not the INT8 one")
    _name_nodes(g)
    types = _types(m)
    for n in g.node:  # custom-domain ops (TensorRT plugins): ONNX cannot infer their outputs; they are FP32
        if n.domain not in ("", "ai.onnx"):
            for o in n.output:
                types.setdefault(o, TensorProto.FLOAT)
    st = _Graph(g, types, {t.name: t for t in g.initializer}, options)
    _choose_kept(st, absmax or {})
    _assign_homes(st)
    nodes, casts = _insert_casts(st)
    nodes, tail_casts = _fix_boundaries(st, nodes)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    try:
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(f"the FP16 graph does not type-check ({str(e).splitlines()[0][:200]}); keep the offending op "
                            "in FP32 with keep_nodes") from None
    return Fp16Result(model=m, kept=list(st.kept.values()), casts_inserted=casts + tail_casts)


def float_types(model) -> dict[str, int]:
    """Elem types of the model's inputs, outputs and inferred intermediate tensors (for tests/reports)."""
    return _types(model)
