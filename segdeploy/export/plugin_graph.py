"""The TensorRT variant of an exported graph: standard ops TensorRT's parser rejects -> our plugin nodes.

Contract: :func:`make_plugin_variant` maps a verified standard ONNX with
:func:`segdeploy.plugins.onnx_mapping.to_plugin_graph`. When nothing needs a plugin it returns None
(``model.onnx`` goes to TensorRT as is). Otherwise it checks the plugin graph on the CPU -- the
plugin ops run by NumPy reference implementations (``onnx.reference``) against ONNX Runtime on the
standard graph, at the profile's min shape -- and returns the bytes and a manifest section. A mismatch
raises :class:`~segdeploy.errors.VerificationError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from segdeploy.errors import VerificationError
from segdeploy.fsutil import sha256_bytes
from segdeploy.spec import ShapeProfile

from segdeploy.vocab import INPUT_NAME, TRT_ONNX


def make_plugin_variant(model_bytes: bytes, profile: ShapeProfile, rtol: float, atol: float) -> tuple[bytes, dict[str, Any]] | None:
    import onnxruntime as ort

    from segdeploy.export.graph import serialize
    from segdeploy.plugins.onnx_mapping import make_reference_evaluator, to_plugin_graph

    model = onnx.load_from_string(model_bytes)
    mapped_model, mapped = to_plugin_graph(model)
    if not mapped:
        return None
    data = serialize(mapped_model)
    shape = profile.min
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    out = make_reference_evaluator(mapped_model).run(None, {INPUT_NAME: x})[0]
    err = float(np.max(np.abs(ref.astype(np.float64) - out))) if ref.size else 0.0
    tol = rtol * float(np.max(np.abs(ref))) + atol
    if out.shape != ref.shape or not err <= tol:
        raise VerificationError(
            f"the TensorRT plugin graph disagrees with the standard graph at {'x'.join(map(str, shape))}: "
            f"max abs error {err:.3g} > {tol:.3g}; report this with the model"
        )
    section = {
        "file": TRT_ONNX,
        "sha256": sha256_bytes(data),
        "nodes": [{"kind": m.kind, "plugin": m.plugin, "name": m.name, "replaces": list(m.replaced),
                   "attributes": {k: (v if not isinstance(v, np.ndarray) else v.tolist()) for k, v in m.attributes.items()}}
                  for m in mapped],
        "library": "libsegdeploy_trt_plugins.so (segdeploy plugins build; trtexec --dynamicPlugins / IPluginRegistry.load_library)",
        "cpu_check": {"shape": list(shape), "max_abs_err": err, "tolerance": tol,
                      "against": "ONNX Runtime on model.onnx; plugin ops by NumPy references"},
    }
    return data, section
