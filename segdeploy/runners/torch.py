"""PyTorch runner: the reference. CPU or CUDA, ``torch.inference_mode``, float32.

``TorchRunner(model, TorchOptions(device="cpu"))`` where ``model`` is an ``nn.Module`` (used as given,
switched to eval mode) or a model file / factory spec loaded lazily through
:func:`segdeploy.load.load_model` at :meth:`open` (``trust_pickle`` and ``output`` are passed on).
The output is selected with segdeploy.load's documented rule (tensor; dict "out"/"logits"; ``.logits``;
first 4-D tuple element; ``output`` overrides) on the first call and must be a float NKHW score map.
CUDA calls are synchronised before the timer stops.
The runner never changes process-wide torch state (threads, seeds, default dtype).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdeploy.errors import MissingDependencyError, ModelLoadError, ShapeError, UsageError
from segdeploy.runners.base import Runner


@dataclass(frozen=True)
class TorchOptions:
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    trust_pickle: bool = False
    output: str | None = None  # output selection rule passed to load_model

    def __post_init__(self) -> None:
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise UsageError(f"torch device must be cpu, cuda or cuda:N, got {self.device!r}")


class TorchRunner(Runner):
    kind = "torch"

    def __init__(self, model: Any, options: TorchOptions | None = None):
        self.options = options or TorchOptions()
        self._source = model
        self.path: str | None = None
        if isinstance(model, (str, os.PathLike)):
            self.path = str(model)
            name = os.path.basename(self.path)
        else:
            name = type(model).__name__
        super().__init__(name)
        self.module = None
        self.spec = None

    def _open(self) -> None:
        import torch

        dev = self.options.device
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise MissingDependencyError(
                "torch reports no CUDA device; use --device cpu, or install a CUDA build of torch on a GPU machine"
            )
        if self.path is not None:
            try:
                from segdeploy.load import load_model
            except ImportError:
                raise MissingDependencyError(
                    "segdeploy.load is not available in this installation; pass an nn.Module from Python"
                ) from None
            lm = load_model(self.path, trust_pickle=self.options.trust_pickle, output=self.options.output)
            module, self.spec = lm.raw, lm.spec  # load_model already put it in eval mode
        else:
            module = self._source
            if not isinstance(module, torch.nn.Module):
                raise ModelLoadError(
                    f"reference model must be an nn.Module or a model file, got {type(module).__name__}"
                )
            try:
                module = module.eval()
            except (NotImplementedError, RuntimeError):
                pass  # torch.export modules (ExportedProgram.module()) refuse eval() and are already in inference form
        self.module = module.to(dev) if dev != "cpu" else module
        self._device = torch.device(dev)
        self._selector = None
        self.output_rule: str | None = None

    def _select(self, out: Any) -> Any:
        """Apply the output selection rule (resolved once, on the first output)."""
        if self._selector is None:
            try:
                from segdeploy.load import choose_output
            except ImportError:  # minimal rule when the loader is absent
                def choose_output(o, override):  # type: ignore[no-redef]
                    if isinstance(o, dict) and "out" in o:
                        return "dict['out']", lambda v: v["out"]
                    return "tensor", lambda v: v

            self.output_rule, self._selector = choose_output(out, self.options.output)
        return self._selector(out)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(batch).to(self._device)
        try:
            with torch.inference_mode():
                out = self._select(self.module(x))
                if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                    raise ModelLoadError(
                        f"{self.name} returned {type(out).__name__}, not one logits tensor; "
                        "select the output when loading (load_model(..., output=...))"
                    )
                out = out.float()
                if self._device.type == "cuda":
                    torch.cuda.synchronize(self._device)
                return out.cpu().numpy()
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ShapeError(f"{self.name}: forward failed on input {tuple(batch.shape)}: {first}") from None

    def _close(self) -> None:
        self.module = None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"device": self.options.device, "path": self.path, "output_rule": getattr(self, "output_rule", None)})
        return d
