"""In-graph probes: ONNX Runtime reduces every calibrated activation right after it is produced.

Contract
--------
:func:`add_probes` rewrites a copy of the model (an ``onnx.ModelProto``, changed in place) so that for every
calibrated tensor ``t`` the nodes right after ``t``'s producer (graph inputs: at the start) are::

    [Cast(to=FLOAT) when t is not float32] -> ReduceMax, ReduceMin, ReduceL1, Size     (scalars)

and the model's outputs become those scalars, plus ``t`` itself (as float32) where ``keep`` asks for the values
(histograms; graph inputs excepted: the caller has them). Nothing else is fetched, so with the session's
priority-based execution order ONNX Runtime frees each activation as usual: the max method never materialises
a batch's activations. ``ReduceL1`` is the NaN probe: ONNX Runtime's ReduceMax/ReduceMin skip NaNs, a sum of
``|x|`` never turns NaN without one (overflow gives Inf); an Inf shows in the max or the min.

When only the max is collected (``keep`` false), the output of a Relu of a probed tensor is read from its
input's probes: ``max |relu(x)| = max(max x, 0)`` exactly.

Tensors whose values are exactly the values of other calibrated tensors are not probed but *derived*
(:attr:`ProbePlan.derived`: tensor -> its sources, in graph order): the output of a Concat of calibrated tensors
holds the union of their values, the output of Identity / Reshape / Flatten / Squeeze / Unsqueeze / Transpose /
Dropout the values of its data input. Their statistics are the exact merge of the sources' (histogram merging
is exact, see histogram.py); a NaN or Inf in them is refused in the source, which comes first in graph order.

:meth:`ProbePlan.read` turns one run's outputs into a :class:`Probe` per probed tensor, in the requested order:
``absmax = max(max, -min)`` (bit-identical to ``np.abs(x).max()`` in float32), ``count``, ``nonfinite``
("NaN" / "Inf" / None) and ``values`` (the flat float32 array when kept, else None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

_FLOAT32 = 1  # onnx.TensorProto.FLOAT
_REDUCTIONS = ("ReduceMax", "ReduceMin", "ReduceL1")
# ops whose output holds exactly the values of their data inputs (None: every input; else how many leading inputs)
_VALUE_COPIES: dict[str, int | None] = {"Concat": None, "Identity": 1, "Reshape": 1, "Flatten": 1, "Squeeze": 1,
                                        "Unsqueeze": 1, "Transpose": 1, "Dropout": 1}


@dataclass(frozen=True)
class Probe:
    absmax: float
    count: int
    nonfinite: str | None
    values: np.ndarray | None


@dataclass(frozen=True)
class _TensorOutputs:
    tensor: str
    maximum: str
    minimum: str | None  # None: a Relu output read from its input's probes (max |relu(x)| = max(max x, 0))
    l1: str | None
    size: str
    values: str | None  # output holding the float32 values; None: not kept or a graph input


class ProbePlan:
    """Which outputs to fetch and how to read them (see module docstring)."""

    def __init__(self, tensors: Sequence[str], entries: Sequence[_TensorOutputs], derived: Mapping[str, tuple[str, ...]]):
        self.tensors = list(tensors)  # every calibrated tensor, in the requested order
        self.derived = dict(derived)  # tensor -> sources, in graph order (a source may itself be derived)
        self._entries = list(entries)  # the probed tensors, in the requested order
        names = (o for e in self._entries for o in (e.maximum, e.minimum, e.l1, e.size, e.values) if o)
        self.outputs = list(dict.fromkeys(names))

    @property
    def probed(self) -> list[str]:
        return [e.tensor for e in self._entries]

    def read(self, fetched: Sequence[np.ndarray], feeds: Mapping[str, np.ndarray], keep: bool) -> list[tuple[str, Probe]]:
        """(tensor, Probe) per probed tensor, in the requested order, from one run's outputs (in :attr:`outputs`
        order) and its feeds."""
        out = dict(zip(self.outputs, fetched))
        probes = []
        for e in self._entries:
            hi = float(out[e.maximum])
            lo, l1 = (float(out[e.minimum]), float(out[e.l1])) if e.minimum else (0.0, 0.0)
            count = int(out[e.size])
            values = None
            if keep and count:
                src = out[e.values] if e.values else feeds[e.tensor]
                values = np.ascontiguousarray(src, dtype=np.float32).reshape(-1)
            if count == 0:
                probes.append((e.tensor, Probe(0.0, 0, None, None)))
                continue
            if e.minimum is None:  # Relu output: its input's probe refuses NaN/Inf (it comes first in graph order)
                probes.append((e.tensor, Probe(max(hi, 0.0), count, None, None)))
                continue
            absmax = max(hi, -lo)
            nonfinite = "NaN" if math.isnan(l1) or math.isnan(absmax) else ("Inf" if math.isinf(absmax) else None)
            probes.append((e.tensor, Probe(absmax, count, nonfinite, values)))
        return probes


def _unique(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _probe_nodes(helper, tensor: str, elem_type: int | None, keep_values: bool, taken: set[str]):
    """(nodes, _TensorOutputs) for one tensor."""
    nodes = []
    src = tensor
    if elem_type != _FLOAT32:
        src = _unique(f"{tensor}::segdeploy_f32", taken)
        nodes.append(helper.make_node("Cast", [tensor], [src], to=_FLOAT32, name=src))
    names = {}
    for op in _REDUCTIONS:
        out = _unique(f"{tensor}::segdeploy_{op}", taken)
        nodes.append(helper.make_node(op, [src], [out], keepdims=0, name=out))
        names[op] = out
    size = _unique(f"{tensor}::segdeploy_Size", taken)
    nodes.append(helper.make_node("Size", [src], [size], name=size))
    entry = _TensorOutputs(tensor, names["ReduceMax"], names["ReduceMin"], names["ReduceL1"], size,
                           src if keep_values else None)
    return nodes, entry


def _value_sources(node, output: str) -> tuple[str, ...] | None:
    """The calibrated-tensor candidates whose values ``output`` holds exactly, or None."""
    n = _VALUE_COPIES.get(node.op_type, 0)
    if n == 0 or node.domain not in ("", "ai.onnx") or output != node.output[0]:
        return None
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        return None  # a training_mode input: it may drop values
    data = list(node.input) if n is None else list(node.input[:n])
    return tuple(data) if data and all(data) else None


def _relu_of_probed(node, output: str, entries: Mapping[str, _TensorOutputs], elem_types: Mapping[str, int],
                    keep: bool) -> bool:
    """Whether ``output`` is a float32 Relu of a probed float32 tensor and only the max is collected."""
    if keep or node.op_type != "Relu" or node.domain not in ("", "ai.onnx") or not node.input:
        return False
    src = entries.get(node.input[0])
    return (src is not None and src.minimum is not None and elem_types.get(output) == _FLOAT32
            and elem_types.get(node.input[0]) == _FLOAT32)


def add_probes(model, tensors: Sequence[str], elem_types: Mapping[str, int], keep: bool) -> ProbePlan:
    """Rewrite ``model`` (in place) as described in the module docstring; returns the plan to read its outputs.

    ``elem_types``: tensor -> ONNX element type (float32 needs no Cast). ``keep``: also output the values.
    """
    from onnx import helper

    g = model.graph
    inputs = [i.name for i in g.input]
    wanted = set(tensors)
    taken = {o for n in g.node for o in n.output} | set(inputs) | {i.name for i in g.initializer}
    entries: dict[str, _TensorOutputs] = {}
    derived: dict[str, tuple[str, ...]] = {}
    new_nodes = []

    def probe(t: str) -> None:
        nodes, entry = _probe_nodes(helper, t, elem_types.get(t), keep and t not in inputs, taken)
        new_nodes.extend(nodes)
        entries[t] = entry

    for t in inputs:
        if t in wanted:
            probe(t)
    for node in g.node:
        new_nodes.append(node)
        for o in node.output:
            if o not in wanted or o in entries or o in derived:
                continue
            sources = _value_sources(node, o)
            if sources and all(i in entries or i in derived for i in sources):
                derived[o] = sources
            elif _relu_of_probed(node, o, entries, elem_types, keep):
                src = entries[node.input[0]]
                entries[o] = _TensorOutputs(o, src.maximum, None, None, src.size, None)
            else:
                probe(o)
    del g.node[:]
    g.node.extend(new_nodes)
    plan = ProbePlan(tensors, [entries[t] for t in tensors if t in entries], derived)
    del g.output[:]
    for o in plan.outputs:
        g.output.append(helper.make_empty_tensor_value_info(o))
    return plan
