"""Map a *standard* ONNX graph onto segdeploy's TensorRT plugin nodes (a post-pass, TensorRT target only).

The exporter keeps standard ONNX ops in the graph it verifies on the CPU (ONNX Runtime runs it);
this pass rewrites a copy for TensorRT, whose ONNX parser rejects MaxPool's ``Indices`` output and
MaxUnpool, and routes ``RoiAlign`` to its built-in plugin with non-torchvision defaults.

Patterns recognised (what torch 2.15's exporters emit; see docs/trt_plugins.md):

* **max-pool with indices**: ``MaxPool`` with two outputs whose flat NCHW ``Indices`` are turned
  into PyTorch's per-plane indices by ``Sub(Indices, Slice(MaxPool_k1(X).Indices, [0,0], [1,1], axes=[2,3]))``
  (both exporters). -> ``SegdeployMaxPoolWithIndices(X) -> (Y, I:int32 per plane)``.
* **max-unpool** (dynamo decomposition): ``Reshape(ScatterND(Reshape(ConstantOfShape(S), [-1]),
  Unsqueeze(Reshape(Add(I, Mul(Reshape(Range(0, N*C, 1)), H*W)))), Reshape(V, [-1])), S)`` where
  ``I`` is a mapped pool's per-plane index tensor. -> ``SegdeployMaxUnpool(V, I, S)`` with ``S``
  (the NCHW output shape, int64) passed as a TensorRT *shape input*
  (``tensorrt_plugin_shape_input_indices = [2]``).
* **roi_align**: ONNX ``RoiAlign`` (mode avg) -> ``SegdeployRoiAlign(X, rois, int32(batch_indices))``
  with ``aligned`` decoded from ``coordinate_transformation_mode`` (or the opset default) and
  ``sampling_ratio`` always written (TensorRT's built-in importer defaults it to 1, ONNX says 0).

Plugin nodes: ``op_type`` = plugin name, ``domain`` = ``plugin_namespace`` = ``"segdeploy"`` (so a
parser that takes the node domain as namespace finds the same creator), ``plugin_version = "1"``;
integer attributes are small ints (they survive TensorRT's int64 -> int32 narrowing), floats are
FLOAT. The mapped graph is checked with ``onnx.checker``; :func:`make_reference_evaluator` runs it
on the CPU with :mod:`segdeploy.plugins.reference` behind the plugin ops.

Raises :class:`PluginMappingError` (one line: which node, what was expected, what to do) when a
recognised op appears in a form that cannot be mapped exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segdeploy.errors import ExportError

__all__ = [
    "PLUGIN_DOMAIN",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "MAXPOOL_PLUGIN",
    "MAXUNPOOL_PLUGIN",
    "ROIALIGN_PLUGIN",
    "MappedNode",
    "PluginMappingError",
    "to_plugin_graph",
    "make_reference_evaluator",
]

PLUGIN_DOMAIN = "segdeploy"
PLUGIN_NAMESPACE = "segdeploy"
PLUGIN_VERSION = "1"
MAXPOOL_PLUGIN = "SegdeployMaxPoolWithIndices"
MAXUNPOOL_PLUGIN = "SegdeployMaxUnpool"
ROIALIGN_PLUGIN = "SegdeployRoiAlign"

_INT32_MAX = 2**31 - 1


class PluginMappingError(ExportError):
    """A max-pool-with-indices / max-unpool / RoiAlign pattern cannot be mapped to plugin nodes."""


@dataclass(frozen=True)
class MappedNode:
    """One plugin node written by :func:`to_plugin_graph`.

    kind: ``"max_pool_with_indices"``, ``"max_unpool"`` or ``"roi_align"``; plugin: its op_type;
    name: the new node's name; replaced: names of the standard nodes it replaces (the anchor
    first); attributes: the plugin attributes written (excluding version/namespace).
    """

    kind: str
    plugin: str
    name: str
    replaced: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- graph view
class _Graph:
    """Producer/consumer/constant lookups over one GraphProto (read-only view)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for o in node.output:
                if o:
                    self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)
        self.inits = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_int", "value_ints"):
                    return np.asarray(helper.get_attribute_value(a), dtype=np.int64)
                if a.name in ("value_float", "value_floats"):
                    return np.asarray(helper.get_attribute_value(a), dtype=np.float32)
        return None

    def through(self, name: str, ops: Iterable[str]) -> str:
        """Follow ``name`` upstream through single-input-data ops in ``ops`` (Reshape, Unsqueeze, ...)."""
        ops = set(ops)
        while True:
            node = self.producer.get(name)
            if node is None or node.op_type not in ops:
                return name
            name = node.input[0]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name or '<unnamed>'!r}"


def _small_ints(values: Iterable[int], what: str, node: onnx.NodeProto) -> list[int]:
    vals = [int(v) for v in values]
    if any(abs(v) > _INT32_MAX for v in vals):
        raise PluginMappingError(f"{_label(node)}: {what} {vals} does not fit int32 (TensorRT narrows plugin ints to int32)")
    return vals


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


# --------------------------------------------------------------------------------- the mapping
@dataclass
class _Rewrite:
    remove: set[int] = field(default_factory=set)  # id(node) to drop
    insert: dict[int, list[onnx.NodeProto]] = field(default_factory=dict)  # id(anchor) -> new nodes
    mapped: list[MappedNode] = field(default_factory=list)


@dataclass(frozen=True)
class _Pool:
    node: onnx.NodeProto
    plane_int32: str  # per-plane int32 indices written by the plugin
    kernel: list[int]
    stride: list[int]
    padding: list[int]


def _unique(g: _Graph, taken: set[str], base: str) -> str:
    name, k = base, 0
    while name in g.producer or name in g.inits or name in taken or any(i.name == name for i in g.graph.input):
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _is_k1_pool_indices(g: _Graph, name: str, x: str) -> bool:
    """``name`` is the Indices output of a kernel-1, stride-1 MaxPool over ``x``."""
    node = g.producer.get(name)
    if node is None or node.op_type != "MaxPool" or len(node.output) < 2 or node.output[1] != name:
        return False
    a = _attrs(node)
    return node.input[0] == x and list(a.get("kernel_shape", [])) == [1, 1] and list(a.get("strides", [1, 1])) == [1, 1]


def _is_plane_offset_slice(g: _Graph, node: onnx.NodeProto | None, x: str) -> bool:
    """``node`` is Slice(k1-pool indices of x, starts [0,0], ends [1,1], axes [2,3])."""
    if node is None or node.op_type != "Slice" or len(node.input) < 3:
        return False
    if not _is_k1_pool_indices(g, node.input[0], x):
        return False
    starts, ends = g.const(node.input[1]), g.const(node.input[2])
    if starts is None or ends is None:
        return False
    has_axes = len(node.input) > 3 and bool(node.input[3])
    axes = g.const(node.input[3]) if has_axes else np.arange(np.asarray(starts).size)
    steps = g.const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    if axes is None:
        return False
    axes = [int(a) % 4 for a in np.atleast_1d(axes)]
    if sorted(axes) != [2, 3] or list(np.atleast_1d(starts)) != [0, 0] or list(np.atleast_1d(ends)) != [1, 1]:
        return False
    return steps is None or list(np.atleast_1d(steps)) == [1, 1]


def _map_pools(g: _Graph, rw: _Rewrite, taken: set[str]) -> dict[str, _Pool]:
    """Rewrite every MaxPool whose Indices output is used; return {per-plane int64 tensor: _Pool}."""
    planes: dict[str, _Pool] = {}
    for node in g.graph.node:
        if not _pool_indices_to_map(g, node):
            continue
        kernel, pads, stride, dilation, ceil_mode = _pool_geometry(node)
        subs = _plane_conversions(g, node)
        attrs = {
            "kernel_size": _small_ints(kernel, "kernel_shape", node),
            "stride": _small_ints(stride, "strides", node),
            "padding": _small_ints(pads[:2], "pads", node),
            "dilation": _small_ints(dilation, "dilations", node),
            "ceil_mode": ceil_mode,
        }
        values = node.output[0] or _unique(g, taken, f"{node.name or 'maxpool'}_values")
        plane32 = _unique(g, taken, f"{subs[0].output[0]}_int32")
        name = _unique(g, taken, f"{node.name or 'maxpool'}_plugin")
        new = helper.make_node(
            MAXPOOL_PLUGIN, [node.input[0]], [values, plane32], name=name, domain=PLUGIN_DOMAIN,
            plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE, **attrs,
        )
        rw.insert[id(node)] = [new]
        rw.remove.add(id(node))
        for s in subs:
            rw.remove.add(id(s))
            planes[s.output[0]] = _Pool(node, plane32, attrs["kernel_size"], attrs["stride"], attrs["padding"])
        rw.mapped.append(MappedNode("max_pool_with_indices", MAXPOOL_PLUGIN, name, (node.name,) + tuple(s.name for s in subs), attrs))
    return planes


def _pool_indices_to_map(g: _Graph, node: onnx.NodeProto) -> bool:
    """A standard MaxPool whose Indices output is used -- except the kernel-1 helper pool of the per-plane
    conversion (removed once unused)."""
    if node.op_type != "MaxPool" or node.domain not in ("", "ai.onnx") or len(node.output) < 2 or not node.output[1]:
        return False
    flat = node.output[1]
    users = g.consumers.get(flat, [])
    if not users and flat not in g.outputs:
        return False  # indices unused (e.g. the kernel-1 helper pool): nothing to map
    return not (_is_k1_pool_indices(g, flat, node.input[0])
                and all(_is_plane_offset_slice(g, u, node.input[0]) for u in users))


def _pool_geometry(node: onnx.NodeProto) -> tuple[list[int], list[int], list[int], list[int], int]:
    """(kernel, pads, strides, dilations, ceil_mode) of a 2-D MaxPool the plugin can run, else PluginMappingError."""
    a = _attrs(node)
    kernel = list(a.get("kernel_shape", []))
    if len(kernel) != 2:
        raise PluginMappingError(f"{_label(node)}: only 2-D max pooling with indices is supported, got kernel {kernel}")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise PluginMappingError(f"{_label(node)}: auto_pad={a['auto_pad']} cannot be mapped; export with explicit padding")
    if int(a.get("storage_order", 0)) != 0:
        raise PluginMappingError(f"{_label(node)}: storage_order=1 (column-major indices) cannot be mapped")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise PluginMappingError(f"{_label(node)}: asymmetric pads {pads} cannot be mapped (PyTorch pads symmetrically)")
    return kernel, pads, list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1])), int(a.get("ceil_mode", 0))


def _plane_conversions(g: _Graph, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The Sub nodes that turn the pool's flat NCHW indices into PyTorch's per-plane ones (every user must be one)."""
    flat = node.output[1]
    if flat in g.outputs:
        raise PluginMappingError(f"{_label(node)}: its flat NCHW Indices are a graph output; only PyTorch's per-plane indices can be mapped")
    subs = []
    for u in g.consumers.get(flat, []):
        if (
            u.op_type == "Sub"
            and u.input[0] == flat
            and _is_plane_offset_slice(g, g.producer.get(u.input[1]), node.input[0])
        ):
            subs.append(u)
        else:
            raise PluginMappingError(
                f"{_label(node)}: its Indices feed {_label(u)}, expected PyTorch's per-plane conversion "
                "(Sub of a kernel-1 MaxPool's indices); export with torch.onnx.export"
            )
    return subs


def _range_offsets(g: _Graph, name: str) -> bool:
    """``name`` is Mul(Reshape(Range(0, _, 1)), plane size) in either operand order."""
    node = g.producer.get(name)
    if node is None or node.op_type != "Mul":
        return False
    for operand in node.input:
        r = g.producer.get(g.through(operand, ("Reshape", "Unsqueeze", "Cast")))
        if r is not None and r.op_type == "Range":
            start, delta = g.const(r.input[0]), g.const(r.input[2])
            if start is not None and delta is not None and int(np.asarray(start).reshape(-1)[0]) == 0 and int(np.asarray(delta).reshape(-1)[0]) == 1:
                return True
    return False


def _map_unpools(g: _Graph, rw: _Rewrite, taken: set[str], planes: dict[str, _Pool]) -> set[str]:
    """Rewrite the dynamo exporter's ScatterND decomposition of max_unpool2d; return the plane tensors consumed."""
    used: set[str] = set()
    for node in g.graph.node:
        if node.op_type != "ScatterND":
            continue
        add = g.producer.get(g.through(node.input[1], ("Unsqueeze", "Reshape")))
        if add is None or add.op_type != "Add":
            continue
        plane = next((i for i in add.input if i in planes), None)
        if plane is None:
            continue  # a ScatterND that is not fed by a mapped pool's indices: not an unpool
        other = add.input[1] if add.input[0] == plane else add.input[0]
        if not _range_offsets(g, other):
            raise PluginMappingError(
                f"{_label(node)}: scatters pool indices without PyTorch's plane offsets (Range * H*W); cannot map to {MAXUNPOOL_PLUGIN}"
            )
        if _attrs(node).get("reduction", "none") != "none":
            raise PluginMappingError(f"{_label(node)}: ScatterND reduction={_attrs(node)['reduction']} is not a max_unpool2d")
        zeros = g.producer.get(g.through(node.input[0], ("Reshape",)))
        if zeros is None or zeros.op_type != "ConstantOfShape":
            raise PluginMappingError(f"{_label(node)}: unpool data is not a zero ConstantOfShape; cannot map to {MAXUNPOOL_PLUGIN}")
        fill = _attrs(zeros).get("value")
        if fill is not None and np.any(numpy_helper.to_array(fill) != 0):
            raise PluginMappingError(f"{_label(node)}: unpool fill value is not 0; cannot map to {MAXUNPOOL_PLUGIN}")
        shape = zeros.input[0]
        outs = g.consumers.get(node.output[0], [])
        if node.output[0] in g.outputs or len(outs) != 1 or outs[0].op_type != "Reshape" or outs[0].input[1] != shape:
            raise PluginMappingError(
                f"{_label(node)}: expected its output to be reshaped to the ConstantOfShape shape {shape!r}; cannot map to {MAXUNPOOL_PLUGIN}"
            )
        final = outs[0]
        values = g.through(node.input[2], ("Reshape",))
        pool = planes[plane]
        attrs = {
            "kernel_size": pool.kernel,
            "stride": pool.stride,
            "padding": pool.padding,
        }
        name = _unique(g, taken, f"{final.name or 'maxunpool'}_plugin")
        new = helper.make_node(
            MAXUNPOOL_PLUGIN, [values, pool.plane_int32, shape], [final.output[0]], name=name, domain=PLUGIN_DOMAIN,
            plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE,
            tensorrt_plugin_shape_input_indices=[2], **attrs,
        )
        rw.insert[id(final)] = [new]
        for n in (node, final, add):
            rw.remove.add(id(n))
        used.add(plane)
        rw.mapped.append(MappedNode("max_unpool", MAXUNPOOL_PLUGIN, name, (final.name, node.name, add.name), attrs))
    return used


def _map_roi_aligns(g: _Graph, rw: _Rewrite, taken: set[str], opset: int) -> None:
    for node in g.graph.node:
        if node.op_type != "RoiAlign" or node.domain not in ("", "ai.onnx"):
            continue
        a = _attrs(node)
        if a.get("mode", "avg") != "avg":
            raise PluginMappingError(f"{_label(node)}: mode={a['mode']} is not torchvision's roi_align (avg); cannot map to {ROIALIGN_PLUGIN}")
        default_ctm = "half_pixel" if opset >= 16 else "output_half_pixel"
        ctm = a.get("coordinate_transformation_mode", default_ctm)
        if ctm not in ("half_pixel", "output_half_pixel"):
            raise PluginMappingError(f"{_label(node)}: unknown coordinate_transformation_mode {ctm!r}")
        attrs = {
            "output_height": _small_ints([a.get("output_height", 1)], "output_height", node)[0],
            "output_width": _small_ints([a.get("output_width", 1)], "output_width", node)[0],
            "sampling_ratio": _small_ints([a.get("sampling_ratio", 0)], "sampling_ratio", node)[0],
            "spatial_scale": float(a.get("spatial_scale", 1.0)),
            "aligned": 1 if ctm == "half_pixel" else 0,
        }
        if len(node.input) != 3:
            raise PluginMappingError(f"{_label(node)}: expected 3 inputs (X, rois, batch_indices), got {len(node.input)}")
        bidx32 = _unique(g, taken, f"{node.input[2]}_int32")
        cast_name = _unique(g, taken, f"{node.name or 'roialign'}_batch_indices_int32")
        cast = helper.make_node("Cast", [node.input[2]], [bidx32], name=cast_name, to=TensorProto.INT32)
        name = _unique(g, taken, f"{node.name or 'roialign'}_plugin")
        new = helper.make_node(
            ROIALIGN_PLUGIN, [node.input[0], node.input[1], bidx32], list(node.output), name=name, domain=PLUGIN_DOMAIN,
            plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE, **attrs,
        )
        rw.insert[id(node)] = [cast, new]
        rw.remove.add(id(node))
        rw.mapped.append(MappedNode("roi_align", ROIALIGN_PLUGIN, name, (node.name,), attrs))


def _dead_code(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Drop nodes (named in ``candidates`` by output) whose outputs are no longer used, iteratively."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input if i} | outputs
        dead = [
            k for k, n in enumerate(graph.node)
            if any(o in candidates for o in n.output) and not any(o in used for o in n.output if o)
        ]
        if not dead:
            return
        for k in reversed(dead):
            del graph.node[k]


def to_plugin_graph(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[MappedNode]]:
    """Return a copy of ``model`` with the plugin patterns replaced, and the list of plugin nodes written.

    ``model`` is not modified. A model without any of the patterns comes back unchanged (empty list).
    Raises :class:`PluginMappingError` when a pattern is present but cannot be mapped exactly.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    g = _Graph(graph)
    rw = _Rewrite()
    taken: set[str] = set()
    # Nodes are keyed by id(): the wrappers stay alive (g references every node) for the whole pass.
    planes = _map_pools(g, rw, taken)
    _map_unpools(g, rw, taken, planes)
    _map_roi_aligns(g, rw, taken, _opset(out))
    if not rw.mapped:
        return out, []
    _cast_plane_indices_back(g, rw, taken, planes)
    candidates = _dead_code_candidates(g, rw)
    new_nodes: list[onnx.NodeProto] = []
    for n in graph.node:
        if id(n) in rw.insert:
            new_nodes.extend(rw.insert[id(n)])
        if id(n) not in rw.remove:
            new_nodes.append(n)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _dead_code(graph, candidates)
    _prune_tables(graph)
    if not any(imp.domain == PLUGIN_DOMAIN for imp in out.opset_import):
        out.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug in this pass, not user input
        raise PluginMappingError(f"plugin graph failed onnx.checker: {str(exc).splitlines()[0]}") from exc
    return out, rw.mapped


def _cast_plane_indices_back(g: _Graph, rw: _Rewrite, taken: set[str], planes: dict[str, _Pool]) -> None:
    """Per-plane indices still used elsewhere (or a graph output): cast the plugin's int32 back to int64."""
    for plane, pool in planes.items():
        users = [u for u in g.consumers.get(plane, []) if id(u) not in rw.remove]
        if users or plane in g.outputs:
            cast = helper.make_node(
                "Cast", [pool.plane_int32], [plane], name=_unique(g, taken, f"{plane}_int64"), to=TensorProto.INT64
            )
            rw.insert[id(pool.node)].append(cast)


def _dead_code_candidates(g: _Graph, rw: _Rewrite) -> set[str]:
    """Inputs of removed nodes and everything upstream of them (the exporters' index arithmetic): what may go."""
    removed_inputs = {i for n in g.graph.node if id(n) in rw.remove for i in n.input if i}
    candidates: set[str] = set()
    stack = list(removed_inputs)
    while stack:
        t = stack.pop()
        if t in candidates:
            continue
        candidates.add(t)
        p = g.producer.get(t)
        if p is not None:
            stack.extend(i for i in p.input if i)
    return candidates


def _prune_tables(graph: onnx.GraphProto) -> None:
    """Drop value_info of tensors no longer produced and initializers no longer used."""
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    keep_vi = [vi for vi in graph.value_info if vi.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    used = {i for n in graph.node for i in n.input}
    keep_init = [t for t in graph.initializer if t.name in used or t.name in {o.name for o in graph.output}]
    del graph.initializer[:]
    graph.initializer.extend(keep_init)


# ------------------------------------------------------------------------ CPU evaluation (tests)
def make_reference_evaluator(model: onnx.ModelProto):
    """An ``onnx.reference.ReferenceEvaluator`` for a plugin-node graph, plugin ops backed by reference.py.

    Slow (pure NumPy): for small verification inputs only. Returns the evaluator; call
    ``.run(None, feeds)``.
    """
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    from segdeploy.plugins import reference as ref

    class SegdeployMaxPoolWithIndices(OpRun):
        op_domain = PLUGIN_DOMAIN

        def _run(self, x, kernel_size=None, stride=None, padding=None, dilation=None, ceil_mode=None,
                 plugin_version=None, plugin_namespace=None):
            y, i = ref.max_pool2d_with_indices(x, kernel_size, stride, padding, dilation, bool(ceil_mode))
            return y, i.astype(np.int32)

    class SegdeployMaxUnpool(OpRun):
        op_domain = PLUGIN_DOMAIN

        def _run(self, x, indices, shape=None, kernel_size=None, stride=None, padding=None,
                 tensorrt_plugin_shape_input_indices=None, plugin_version=None, plugin_namespace=None):
            size = None if shape is None else tuple(int(s) for s in np.asarray(shape).reshape(-1))
            return (ref.max_unpool2d(x, indices, kernel_size, stride, padding, output_size=size),)

    class SegdeployRoiAlign(OpRun):
        op_domain = PLUGIN_DOMAIN

        def _run(self, x, rois, batch_indices, output_height=None, output_width=None, sampling_ratio=None,
                 spatial_scale=None, aligned=None, plugin_version=None, plugin_namespace=None):
            return (ref.roi_align(x, rois, batch_indices, (output_height, output_width), spatial_scale,
                                  sampling_ratio, bool(aligned)),)

    return ReferenceEvaluator(model, new_ops=[SegdeployMaxPoolWithIndices, SegdeployMaxUnpool, SegdeployRoiAlign])
