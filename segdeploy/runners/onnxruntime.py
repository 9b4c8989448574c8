"""ONNX Runtime runner: the CPU candidate (and CUDA / TensorRT execution providers where installed).

``OrtRunner(path, OrtOptions(device="cpu", graph_optimization_level="all"))``.

* ``device``: "cpu" -> CPUExecutionProvider; "cuda" -> CUDA EP (+ CPU fallback); "tensorrt" -> TensorRT EP
  (+ CUDA + CPU). A requested EP that this onnxruntime build lacks raises MissingDependencyError with the
  install hint (``pip install onnxruntime-gpu``) -- never a silent CPU fallback.
* ``graph_optimization_level``: "disable" | "basic" | "extended" | "all" (ORT's ``ORT_DISABLE_ALL`` ...
  ``ORT_ENABLE_ALL``). For Q/DQ models, "disable" emulates Q/DQ in float (the faithful reference for
  TensorRT); "extended"/"all" fuse DQ->op->Q into int8 QLinear kernels only where a QuantizeLinear follows
  the op -- with segdeploy's TensorRT-style placement (Q/DQ on op inputs) that is rare, so most of an INT8
  model still runs in float on the CPU (``segdeploy bench`` reports what ORT actually runs).
* ``intra_op_num_threads``: per session (None = ORT default); no process-wide state is touched.

The model must have one input (float32 NCHW); the output named "logits" is used, else the first.
Input shape conflicts (channels, static H/W) and ORT run failures raise ShapeError with ORT's message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdeploy.errors import ArtifactError, MissingDependencyError, ModelLoadError, ShapeError, UsageError
from segdeploy.runners.base import Runner
from segdeploy.vocab import OUTPUT_NAME, OrtLevel

_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


@dataclass(frozen=True)
class OrtOptions:
    device: str = "cpu"
    graph_optimization_level: str = OrtLevel.ALL
    intra_op_num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.device not in _PROVIDERS:
            raise UsageError(f"onnxruntime device must be one of {', '.join(_PROVIDERS)}, got {self.device!r}")
        object.__setattr__(self, "graph_optimization_level",
                           OrtLevel.parse(self.graph_optimization_level, "graph optimization level"))
        if self.intra_op_num_threads is not None and self.intra_op_num_threads < 0:
            raise UsageError("intra_op_num_threads must be >= 0")


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed; pip install onnxruntime") from None
    return onnxruntime


class OrtRunner(Runner):
    kind = "onnxruntime"

    def __init__(self, path: str | os.PathLike, options: OrtOptions | None = None):
        self.path = str(path)
        self.options = options or OrtOptions()
        super().__init__(os.path.basename(self.path))
        self.session = None

    def _open(self) -> None:
        from segdeploy import safefs

        ort = _ort()
        try:  # a FIFO or device is one line here, never a hang inside onnxruntime
            safefs.require_regular(self.path, fix="pass an ONNX model file")
        except FileNotFoundError:
            raise ArtifactError(f"ONNX model {self.path} not found; run `segdeploy export` or fix the path") from None
        wanted = _PROVIDERS[self.options.device]
        available = set(ort.get_available_providers())
        missing = [p for p in wanted if p not in available]
        if missing:
            raise MissingDependencyError(
                f"this onnxruntime has no {missing[0]} (available: {', '.join(sorted(available))}); "
                "pip install onnxruntime-gpu (with CUDA/TensorRT libraries) or use device cpu"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OrtLevel(self.options.graph_optimization_level).ort_name)
        if self.options.intra_op_num_threads is not None:
            so.intra_op_num_threads = self.options.intra_op_num_threads
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(self.path, sess_options=so, providers=list(wanted))
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"onnxruntime cannot load {self.path}: {first}") from None
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(
                f"{self.path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                "a segmentation model needs exactly one image input"
            )
        self._input = inputs[0]
        outs = sess.get_outputs()
        names = [o.name for o in outs]
        self._output = OUTPUT_NAME if OUTPUT_NAME in names else names[0]
        self.session = sess

    def _check_input(self, batch: np.ndarray) -> None:
        shape = self._input.shape
        if len(shape) != 4:
            raise ShapeError(f"{self.name}: model input {self._input.name} has rank {len(shape)}, expected NCHW")
        for axis, label in ((1, "channels"), (2, "height"), (3, "width")):
            dim = shape[axis]
            if isinstance(dim, int) and dim != batch.shape[axis]:
                raise ShapeError(
                    f"{self.name}: model expects {label} {dim} but got {batch.shape[axis]} (input {tuple(batch.shape)}); "
                    "the manifest/preprocessing does not match this model"
                )

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self._check_input(batch)
        try:
            (out,) = self.session.run([self._output], {self._input.name: batch})
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ShapeError(f"{self.name}: onnxruntime failed on input {tuple(batch.shape)}: {first}") from None
        return out

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        try:
            res = self.session.run(names, {self._input.name: x})
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ShapeError(f"{self.name}: onnxruntime failed on input {tuple(x.shape)}: {first}") from None
        return dict(zip(names, res))

    def _close(self) -> None:
        self.session = None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "path": self.path,
                "device": self.options.device,
                "graph_optimization_level": self.options.graph_optimization_level,
                "providers": list(self.session.get_providers()) if self.session is not None else None,
            }
        )
        return d
