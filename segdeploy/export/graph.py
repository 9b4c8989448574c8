"""ONNX graph finishing: clean-up, stable names, metadata, checks, deterministic bytes.

Contract: :func:`finish_graph` takes the exporter's ONNX and returns a model with input ``input``
``[batch, C, height, width]`` and output ``logits`` (symbolic dims named consistently), no doc strings or
per-node exporter metadata (source paths, stack traces), ``metadata_props`` carrying the segdeploy version
and source hash, no intermediate ``value_info`` (it varies run to run on the dynamo path), cleaned up by
the chosen tool and passing ``onnx.checker`` with ``full_check``.
:func:`serialize` gives deterministic bytes, so equal inputs give byte-identical files.
"""

from __future__ import annotations

import onnx

from segdeploy import __version__
from segdeploy.errors import ExportError
from segdeploy.vocab import INPUT_NAME, OUTPUT_NAME
from segdeploy.spec import ShapeProfile

CLEANUPS = ("onnxslim", "ort-basic", "none")


def _dims(vi: onnx.ValueInfoProto):
    return vi.type.tensor_type.shape.dim


def _rename_dims(model: onnx.ModelProto, mapping: dict[str, str]) -> None:
    def fix(vis):
        for vi in vis:
            if vi.type.HasField("tensor_type"):
                for d in vi.type.tensor_type.shape.dim:
                    if d.HasField("dim_param") and d.dim_param in mapping:
                        d.dim_param = mapping[d.dim_param]

    fix(model.graph.input)
    fix(model.graph.output)
    fix(model.graph.value_info)


def name_dims(model: onnx.ModelProto, profile: ShapeProfile, output_stride: tuple[float, float]) -> None:
    """Give the input/output symbolic dims stable names: batch, height, width (out_height/out_width
    when the output has another stride)."""
    inp = model.graph.input[0]
    out = model.graph.output[0]
    mapping: dict[str, str] = {}
    names = {0: "batch", 2: "height", 3: "width"}
    for a, d in enumerate(_dims(inp)):
        if a in names and d.HasField("dim_param"):
            mapping[d.dim_param] = names[a]
    _rename_dims(model, mapping)
    for a, d in enumerate(_dims(out)):
        if a == 0 and profile.min[0] != profile.max[0]:
            d.dim_param = "batch"
        elif a in (2, 3) and profile.min[a] != profile.max[a]:
            same = output_stride[a - 2] == 1.0
            d.dim_param = names[a] if same else f"out_{names[a]}"


def strip_debug_info(model: onnx.ModelProto) -> None:
    """Drop doc strings and per-node exporter metadata (paths, stack traces): smaller, reproducible files."""
    model.doc_string = ""
    model.graph.doc_string = ""

    def walk(graph: onnx.GraphProto):
        for node in graph.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        walk(g)
        for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
            vi.doc_string = ""
            del vi.metadata_props[:]
        for init in graph.initializer:
            init.doc_string = ""

    walk(model.graph)
    for f in model.functions:
        for node in f.node:
            node.doc_string = ""
            del node.metadata_props[:]


def cleanup(model: onnx.ModelProto, tool: str) -> onnx.ModelProto:
    """Simplify the graph with ``tool``: onnxslim (default), ORT basic offline optimisation, or none."""
    if tool == "none":
        return model
    if tool == "onnxslim":
        import onnxslim

        try:
            return onnxslim.slim(model)
        except Exception as e:
            raise ExportError(f"onnxslim failed on the exported graph ({type(e).__name__}: {e}); retry with --cleanup none") from None
    if tool == "ort-basic":
        import os
        import tempfile

        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "in.onnx")
            dst = os.path.join(d, "out.onnx")
            onnx.save(model, src)
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.optimized_model_filepath = dst
            ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
            return onnx.load(dst)
    raise ExportError(f"unknown clean-up tool {tool!r}; use one of {', '.join(CLEANUPS)}")


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k in sorted(props):
        e = model.metadata_props.add()
        e.key = k
        e.value = props[k]


def check(model: onnx.ModelProto) -> None:
    """onnx.checker with full_check (includes strict shape inference); raise ExportError on failure."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"the exported ONNX fails onnx.checker: {first}") from None


def finish_graph(
    model: onnx.ModelProto,
    profile: ShapeProfile,
    output_stride: tuple[float, float],
    cleanup_tool: str,
    source_sha256: str,
) -> onnx.ModelProto:
    """Clean up, name, strip and stamp an exported model; run the full checker. See module docstring."""
    if [i.name for i in model.graph.input] != [INPUT_NAME] or [o.name for o in model.graph.output] != [OUTPUT_NAME]:
        raise ExportError(
            f"the exported graph has inputs {[i.name for i in model.graph.input]} and outputs "
            f"{[o.name for o in model.graph.output]}; expected [{INPUT_NAME}] -> [{OUTPUT_NAME}]"
        )
    model = cleanup(model, cleanup_tool)
    name_dims(model, profile, output_stride)
    strip_debug_info(model)
    # Intermediate shape annotations are optional (ONNX Runtime and TensorRT infer shapes) and the dynamo
    # path fills a varying subset of them run to run: drop them so re-exports are byte-identical.
    del model.graph.value_info[:]
    set_metadata(
        model,
        {
            "segdeploy_version": __version__,
            "segdeploy_source_sha256": source_sha256,
            "segdeploy_input": INPUT_NAME,
            "segdeploy_output": OUTPUT_NAME,
        },
    )
    model.producer_name = model.producer_name or "pytorch"
    check(model)
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic protobuf bytes."""
    return model.SerializeToString(deterministic=True)


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return -1
