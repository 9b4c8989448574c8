"""Inspecting an ONNX model: what Polygraphy's ``inspect model`` shows, plus what segdeploy adds to a graph.

Contract
--------
:func:`inspect_onnx` parses the model from the bytes it is given (external data is never loaded; the files it
names are checked for presence beside the model) and returns a JSON-able report: producer, IR version, opset per
domain, inputs and outputs (element type, dims; a named dim is a dynamic axis and is listed by axis), the op
histogram (nodes of subgraphs counted too), the Q/DQ pairs and their integer/float types, segdeploy's plugin
nodes (domain ``segdeploy``) and any other custom-domain ops, the initializers (count, elements, dtypes) and the
external data files. A file that does not parse (truncated, not ONNX) is one :class:`ArtifactError` line.
:func:`onnx_text` renders the report.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from segdeploy.errors import ArtifactError

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _dtype_name(code: int) -> str:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(code).name if code != onnx.TensorProto.BFLOAT16 else "bfloat16"
    except Exception:  # types numpy has no name for (float8, int4): ONNX's own name
        return onnx.TensorProto.DataType.Name(code).lower()


def _value_info(v: Any) -> dict[str, Any]:
    t = v.type.tensor_type
    dims: list[Any] = []
    dynamic: dict[str, str] = {}
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            name = d.dim_param or "?"
            dims.append(name)
            dynamic[str(i)] = name
    return {"name": v.name, "dtype": _dtype_name(t.elem_type) if t.elem_type else None, "dims": dims,
            "dynamic_axes": dynamic}


def _all_nodes(graph: Any) -> list[Any]:
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                out += _all_nodes(sub)
    return out


def _qdq(model: Any, nodes: list[Any]) -> dict[str, Any]:
    """Q/DQ counts and the types their zero points (or outputs) carry."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    types: Counter[str] = Counter()
    count = Counter(n.op_type for n in nodes if n.op_type in QDQ_OPS and n.domain in STANDARD_DOMAINS)
    for n in nodes:
        if n.op_type == "QuantizeLinear" and n.domain in STANDARD_DOMAINS:
            zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
            types[_dtype_name(inits[zp]) if zp in inits else ("uint8" if zp is None else "unknown")] += 1
    return {"quantize": count["QuantizeLinear"], "dequantize": count["DequantizeLinear"], "types": dict(types)}


def _external_data(model: Any, where: Path) -> list[dict[str, Any]]:
    import onnx

    files: dict[str, int] = {}
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in init.external_data if e.key == "location"), "?")
            files[loc] = files.get(loc, 0) + 1
    return [{"location": loc, "tensors": n, "present": os.path.lexists(where / loc)} for loc, n in sorted(files.items())]


def _initializers(model: Any) -> dict[str, Any]:
    dtypes: Counter[str] = Counter()
    elements = 0
    for init in model.graph.initializer:
        dtypes[_dtype_name(init.data_type)] += 1
        elements += math.prod(init.dims)
    return {"count": len(model.graph.initializer), "elements": elements, "dtypes": dict(dtypes)}


def parse_onnx(data: bytes, shown: str) -> Any:
    """The ModelProto in ``data``; ArtifactError (one line) when it is truncated or not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{shown} is not a readable ONNX model ({' '.join(str(e).split())[:120] or 'decode error'}): "
                            "it is truncated or corrupt; export it again") from None
    if not model.HasField("graph") or not model.graph.output or not model.opset_import:
        raise ArtifactError(f"{shown} is an incomplete ONNX model (no graph, outputs or opset): it is truncated or "
                            "corrupt; export it again")
    return model


def inspect_onnx(path: Path, data: bytes) -> dict[str, Any]:
    """The report of the ONNX model ``data`` read from ``path`` (see the module docstring)."""
    from segdeploy.plugins.onnx_mapping import PLUGIN_DOMAIN

    model = parse_onnx(data, str(path))
    nodes = _all_nodes(model.graph)
    init_names = {i.name for i in model.graph.initializer}
    ops = Counter((n.op_type if n.domain in STANDARD_DOMAINS else f"{n.domain}::{n.op_type}") for n in nodes)
    custom = Counter(f"{n.domain}::{n.op_type}" for n in nodes if n.domain not in STANDARD_DOMAINS + (PLUGIN_DOMAIN,))
    return {
        "file": str(path), "kind": "onnx", "bytes": len(data),
        "producer": f"{model.producer_name} {model.producer_version}".strip(), "ir_version": int(model.ir_version),
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "inputs": [_value_info(v) for v in model.graph.input if v.name not in init_names],
        "outputs": [_value_info(v) for v in model.graph.output],
        "nodes": len(nodes), "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "qdq": _qdq(model, nodes),
        "plugin_nodes": dict(Counter(n.op_type for n in nodes if n.domain == PLUGIN_DOMAIN)),
        "custom_ops": dict(custom),
        "initializers": _initializers(model),
        "external_data": _external_data(model, path.parent),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def _io_line(v: dict[str, Any]) -> str:
    dims = ", ".join(str(d) for d in v["dims"]) or "scalar"
    dyn = ", ".join(f"axis {a} '{n}'" for a, n in v["dynamic_axes"].items())
    return f"    {v['name']}: {v['dtype']} [{dims}]" + (f" (dynamic: {dyn})" if dyn else " (static)")


def onnx_text(r: dict[str, Any]) -> str:
    """The ONNX report as terminal lines."""
    opset = ", ".join(f"{d} {v}" for d, v in r["opset"].items())
    lines = [f"{os.path.basename(r['file'])}: ONNX model, opset {opset} (IR {r['ir_version']}, {r['producer'] or 'unknown producer'})",
             f"  size:     {r['bytes'] / 2**20:.2f} MiB ({r['bytes']} bytes)", "  inputs:"]
    lines += [_io_line(v) for v in r["inputs"]]
    lines.append("  outputs:")
    lines += [_io_line(v) for v in r["outputs"]]
    top = ", ".join(f"{op} {n}" for op, n in list(r["ops"].items())[:12])
    more = len(r["ops"]) - 12
    lines.append(f"  ops:      {r['nodes']} nodes: {top}" + (f", ... {more} more op types" if more > 0 else ""))
    q = r["qdq"]
    lines.append(f"  Q/DQ:     {q['quantize']} QuantizeLinear, {q['dequantize']} DequantizeLinear"
                 + (f" ({', '.join(f'{t} {n}' for t, n in q['types'].items())})" if q["types"] else ""))
    plugins = ", ".join(f"{op} {n}" for op, n in r["plugin_nodes"].items())
    lines.append(f"  plugins:  {plugins or 'none'}" + (" (needs the segdeploy TensorRT plugin library)" if plugins else ""))
    if r["custom_ops"]:
        lines.append("  custom ops: " + ", ".join(f"{op} {n}" for op, n in r["custom_ops"].items()))
    i = r["initializers"]
    lines.append(f"  weights:  {i['count']} initializers, {i['elements']:,} elements ("
                 + ", ".join(f"{t} {n}" for t, n in i["dtypes"].items()) + ")")
    for e in r["external_data"]:
        lines.append(f"  external data: {e['location']} ({e['tensors']} tensors, {'present' if e['present'] else 'MISSING'})")
    if not r["external_data"]:
        lines.append("  external data: none")
    return "\n".join(lines)
