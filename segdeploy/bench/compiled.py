"""The ``torch-compile`` benchmark runner: a :class:`~segdeploy.runners.torch.TorchRunner` whose module is
wrapped in ``torch.compile`` (inductor, ``dynamic=False``: one specialised graph per input shape).

Contract: same Runner interface as TorchRunner (float32 NCHW numpy in, float32 logits out, one timing per
call). ``open()`` loads the model and wraps it; compilation happens lazily on the first call at each new
shape, so a benchmark must warm up (segdeploy.bench reports that first call's time separately).

Errors: :func:`check_compile_available` raises MissingDependencyError when this Python/torch cannot compile
(no ``torch.compile``, dynamo unsupported on this Python, no C++ compiler for inductor's CPU code); a
compilation that fails on the model raises ModelLoadError naming the first line of torch's message; an input
the model rejects raises ShapeError, as in TorchRunner. No process-wide torch setting is changed (dynamo's
compile cache is filled, as any torch.compile call does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segdeploy.errors import MissingDependencyError, ModelLoadError, ShapeError
from segdeploy.runners.torch import TorchRunner

EAGER_HINT = "use --runner torch (eager) instead"


def check_compile_available(device: str = "cpu") -> None:
    """Raise MissingDependencyError (one line) when torch.compile cannot work here for ``device``."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"torch is not installed; pip install torch, or {EAGER_HINT}") from None
    if not hasattr(torch, "compile"):
        raise MissingDependencyError(f"torch {torch.__version__} has no torch.compile (needs >= 2.0); {EAGER_HINT}")
    try:
        import torch._dynamo as dynamo

        supported = dynamo.is_dynamo_supported()
    except Exception as e:  # an import failure here means compile cannot run either
        supported, why = False, str(e).splitlines()[0] if str(e) else type(e).__name__
    else:
        why = "torch.compile does not support this Python version"
    if not supported:
        raise MissingDependencyError(f"torch.compile is unavailable here ({why}); {EAGER_HINT}")
    if device == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # layout of torch internals changed: let the first compile tell
            return
        try:
            get_cpp_compiler()
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MissingDependencyError(
                f"torch.compile on the CPU needs a C++ compiler, none found ({first}); install g++ or set CXX, "
                f"or {EAGER_HINT}"
            ) from None


class CompiledTorchRunner(TorchRunner):
    """TorchRunner + ``torch.compile(module, dynamic=False)``."""

    kind = "torch-compile"

    def _open(self) -> None:
        import torch

        check_compile_available("cuda" if self.options.device.startswith("cuda") else "cpu")
        super()._open()
        if isinstance(self.module, torch.jit.ScriptModule):  # torch.compile raises a RuntimeError on it
            raise ModelLoadError(f"{self.name} is a TorchScript model, which torch.compile cannot compile; benchmark it "
                                 "with --runner torch, or save the model with torch.export.save and compile that")
        self.module = torch.compile(self.module, dynamic=False)
        self._compiled_shapes: set[tuple[int, ...]] = set()
        self.compile_notes: list[str] = []

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """The compiled forward; the first call at a shape compiles, and what torch logs and warns while it does
        (e.g. "No CUDA runtime is found") is kept in ``compile_notes`` instead of reaching the command's stderr."""
        if tuple(batch.shape) in self._compiled_shapes:
            return self._forward(batch)
        from segdeploy.safety import captured_diagnostics

        with captured_diagnostics() as diag:
            out = self._forward(batch)
        self._compiled_shapes.add(tuple(batch.shape))
        if diag.summary():
            self.compile_notes.append(f"torch.compile at {tuple(batch.shape)} said: {diag.summary()}")
        return out

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch
        import torch._dynamo

        x = torch.from_numpy(batch).to(self._device)
        try:
            with torch.inference_mode():
                out = self._select(self.module(x))
        except torch._dynamo.exc.TorchDynamoException as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ModelLoadError(f"torch.compile failed on {self.name} at input {tuple(batch.shape)}: {first}; "
                                 f"{EAGER_HINT}") from None
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ShapeError(f"{self.name}: compiled forward failed on input {tuple(batch.shape)}: {first}") from None
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise ModelLoadError(f"{self.name} returned {type(out).__name__}, not one logits tensor; "
                                 "export the model so that it returns the logits")
        out = out.float()
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        return out.cpu().numpy()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"kind": self.kind, "compile": {"backend": "inductor", "dynamic": False,
                                                  "notes": list(getattr(self, "compile_notes", []))}})
        return d
