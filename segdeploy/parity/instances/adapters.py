"""Models as ``image CHW float32 [0,1] -> {boxes, labels, scores, masks}`` callables: PyTorch, or any Runner."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from segdeploy.errors import DataError
from segdeploy.parity.instances.model import OUTPUT_NAMES

InstanceModel = Callable[[np.ndarray], Mapping[str, np.ndarray]]
"""A callable: image float32 CHW in [0, 1] -> dict with boxes, labels, scores, masks arrays."""


class TorchInstanceModel:
    """A torchvision-style detection module (``module([chw_tensor]) -> [dict]``) as an InstanceModel.

    The module is used as given (call ``.eval()`` yourself); runs under ``torch.inference_mode`` on
    ``device``.
    """

    def __init__(self, module: Any, device: str = "cpu", name: str | None = None):
        self.module = module
        self.device = device
        self.name = name or type(module).__name__

    def describe(self) -> dict[str, Any]:
        return {"kind": "torch", "name": self.name, "device": self.device}

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module([torch.from_numpy(np.ascontiguousarray(image)).to(self.device)])
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):
            out = out[1]  # scripted torchvision detectors return (losses, detections)
        if not isinstance(out, (list, tuple)) or not out or not isinstance(out[0], Mapping):
            raise DataError(f"reference module returned {type(out).__name__}; expected a list of dicts with "
                            f"{', '.join(OUTPUT_NAMES)} (a torchvision detection model in eval mode)")
        d = out[0]
        missing = [k for k in OUTPUT_NAMES if k not in d]
        if missing:
            raise DataError(f"reference output lacks {', '.join(missing)}; expected keys {', '.join(OUTPUT_NAMES)}")
        return {k: d[k].detach().cpu().numpy() for k in OUTPUT_NAMES}


class RunnerInstanceModel:
    """Any segdeploy Runner (ONNX Runtime, TensorRT, ...) that returns named outputs, as an InstanceModel.

    The runner gets the image (float32 CHW in [0, 1], the exported graph's one input) through
    :meth:`segdeploy.runners.base.Runner.infer_outputs`; outputs are taken by name (boxes, labels, scores, masks)
    when the model has those names, else by position in that order. The runner is opened lazily and closed by
    :meth:`close`.
    """

    def __init__(self, runner: Any):
        self.runner = runner

    def describe(self) -> dict[str, Any]:
        import os

        from segdeploy.fsutil import sha256_file

        d = dict(self.runner.describe())
        path = d.get("path") or getattr(self.runner, "path", None)
        if path and os.path.isfile(path):
            d["path"], d["sha256"] = str(path), sha256_file(path)
        return d

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.runner.infer_outputs(np.ascontiguousarray(image, dtype=np.float32))
        if set(OUTPUT_NAMES) <= set(outs):
            return {k: outs[k] for k in OUTPUT_NAMES}
        if len(outs) != 4:
            raise DataError(f"{self.runner.name} returns {len(outs)} outputs ({', '.join(outs)}); an instance model "
                            "needs four (boxes, labels, scores, masks)")
        return dict(zip(OUTPUT_NAMES, outs.values()))

    def close(self) -> None:
        self.runner.close()


def OnnxInstanceModel(path: Any, providers: Any = ("CPUExecutionProvider",)) -> RunnerInstanceModel:  # noqa: N802
    """An exported Mask R-CNN ``.onnx`` on ONNX Runtime (CPU, or CUDA when ``providers`` asks for it)."""
    from segdeploy.runners import open_runner
    from segdeploy.runners.onnxruntime import OrtOptions

    device = "cuda" if "CUDAExecutionProvider" in tuple(providers) else "cpu"
    return RunnerInstanceModel(open_runner(path, kind="onnxruntime", options=OrtOptions(device=device)))


def _as_chw01(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> float32 CHW in [0, 1] (torchvision detection models normalise internally)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(f"image has shape {img.shape} dtype {img.dtype}; expected HxWx3 uint8 RGB")
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
