"""TensorRT runner: the contract the TensorRT issue fills in. It does NOT run inference yet.

What exists now: ``TensorRTRunner(engine_path, TensorRTOptions())`` imports ``tensorrt`` lazily and raises
:class:`~segdeploy.errors.MissingDependencyError` with the install hint when it is missing (the normal
case on CPU-only machines). When tensorrt *is* importable, construction raises MissingDependencyError
saying that this segdeploy build has no engine runner yet -- never a fake result.

What the TensorRT issue implements (same :class:`~segdeploy.runners.base.Runner` interface):

* ``_open``: ``trt.Runtime(logger).deserialize_cuda_engine(plan)`` (plugin library loaded first when the
  manifest names one; ``engine_host_code_allowed`` only with an explicit trust flag), one execution
  context, a CUDA stream, device buffers sized for the profile's max shape.
* ``_infer(batch)``: ``ctx.set_input_shape(input, batch.shape)`` (inside the engine's optimization profile,
  else ShapeError naming the profile), H2D copy, ``set_tensor_address`` for every I/O tensor,
  ``execute_async_v3(stream)``, D2H copy of "logits", stream synchronise before returning (so the base
  class's timer measures the complete call). Output float32 NKHW (cast from FP16 outputs).
* ``_close``: free buffers, destroy context/engine/stream. Capabilities are detected with ``hasattr``
  (TensorRT 8.6 / 10.x / 11.x), never by enum integers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from segdeploy.errors import MissingDependencyError
from segdeploy.runners.base import Runner

INSTALL_HINT = (
    "install TensorRT (pip install tensorrt on an x86 CUDA machine, or JetPack's python3-libnvinfer on a Jetson)"
)


@dataclass(frozen=True)
class TensorRTOptions:
    device_index: int = 0
    plugin_library: str | None = None
    trust_host_code: bool = False


class TensorRTRunner(Runner):
    kind = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, options: TensorRTOptions | None = None):
        self.path = str(engine_path)
        self.options = options or TensorRTOptions()
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"running engine {os.path.basename(self.path)} needs TensorRT, which is not installed; {INSTALL_HINT}"
            ) from None
        raise MissingDependencyError(
            "this segdeploy build has no TensorRT engine runner yet (tensorrt is installed, the runner is not); "
            "check an ONNX candidate with onnxruntime instead"
        )
