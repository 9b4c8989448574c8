"""Overlapping max-pool windows feeding max-unpool: duplicate indices, a result that depends on write order.

A ``max_pool2d(return_indices=True)`` whose kernel exceeds its stride (e.g. 3x3 stride 2) can pick the same
input position as the maximum of two neighbouring windows; a ``max_unpool2d`` fed those indices then writes
two *different* decoder values to one output position, and the result depends on the write order:

* PyTorch on the CPU writes the input elements in row-major order from ``at::parallel_for`` chunks, so the
  last one wins, except where a chunk boundary splits a pair (PyTorch flags ``max_unpool2d`` as
  nondeterministic on the CPU and CUDA: ``torch.use_deterministic_algorithms(True)`` makes it raise);
* PyTorch on CUDA, and our TensorRT plugin (its *scatter* algorithm, the only one overlapping windows may
  use), run one thread per input element with plain stores: an unspecified thread wins, run to run;
* ONNX ``ScatterND`` (``reduction="none"``) leaves duplicate indices undefined.

ONNX Runtime's CPU ``ScatterND`` applies the updates in order, so ``model.onnx`` verifies against PyTorch on
the CPU (measured: SegNet with 3x3/stride-2 pools, max abs error 1.9e-6), but the TensorRT engine (plugin)
picks an unspecified write. The export therefore says so before tracing, in one line with the fix
(non-overlapping pooling), records it in the probe notes, and names it as the cause when no exporter
verifies. Duplicates that carry equal values (an unpool of the pooled tensor itself) are harmless: no finding.

Contract: :class:`UnpoolRecorder` is a context manager (a ``TorchDispatchMode``) that watches one forward
run: every ``max_pool2d_with_indices`` call's window parameters and every ``max_unpool2d`` call's
conflicts (positions written twice with different values). :meth:`UnpoolRecorder.finding` is None when no
unpool wrote conflicting values, else the one-line finding. It changes no result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten


@dataclass(frozen=True)
class PoolWindow:
    kernel: tuple[int, int]
    stride: tuple[int, int]

    @property
    def overlapping(self) -> bool:
        return self.kernel[0] > self.stride[0] or self.kernel[1] > self.stride[1]

    def __str__(self) -> str:
        return f"kernel {self.kernel[0]}x{self.kernel[1]} stride {self.stride[0]}x{self.stride[1]}"


@dataclass
class UnpoolConflict:
    positions: int  # output positions written more than once with different values
    writes: int  # input elements of the unpool


def _pair(v, default) -> tuple[int, int]:
    v = default if v is None or (isinstance(v, (list, tuple)) and len(v) == 0) else v
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[-1]))


def conflicting_positions(values: torch.Tensor, indices: torch.Tensor) -> int:
    """Output positions (per plane) that ``max_unpool2d(values, indices)`` writes twice with different values."""
    planes = values.shape[0] * values.shape[1] if values.dim() == 4 else values.shape[0]
    idx = indices.reshape(planes, -1).to(torch.int64)
    key = (torch.arange(planes).unsqueeze(1) * (int(idx.max()) + 1 if idx.numel() else 1) + idx).flatten()
    order = torch.argsort(key, stable=True)
    k, v = key[order], values.reshape(-1)[order]
    same_pos = k[1:] == k[:-1]
    differ = same_pos & (v[1:] != v[:-1])
    return int(torch.unique(k[1:][differ]).numel())


class UnpoolRecorder(TorchDispatchMode):
    """Watch one forward run for overlapping pools and conflicting unpools (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.pools: list[PoolWindow] = []
        self.conflicts: list[UnpoolConflict] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is _aten.max_pool2d_with_indices.default:
            kernel = _pair(args[1] if len(args) > 1 else kwargs.get("kernel_size"), 1)
            stride = _pair(args[2] if len(args) > 2 else kwargs.get("stride"), kernel)
            self.pools.append(PoolWindow(kernel, stride))
        elif func is _aten.max_unpool2d.default:
            values, indices = args[0], args[1]
            n = conflicting_positions(values.detach(), indices.detach())
            if n:
                self.conflicts.append(UnpoolConflict(n, values.numel()))
        return out

    def finding(self) -> str | None:
        """None, or one line: the overlapping pools, the conflicting writes, who wins where, and the fix."""
        if not self.conflicts:
            return None
        pools = sorted({str(p) for p in self.pools if p.overlapping}) or ["windows that overlap"]
        worst = max(self.conflicts, key=lambda c: c.positions)
        return (f"max-pool windows overlap ({', '.join(pools)}) and feed max_unpool2d: {worst.positions} output "
                f"positions receive two different values (of {worst.writes} writes), so the result depends on the "
                "write order: PyTorch CPU and ONNX Runtime CPU let the last in row-major order win, PyTorch CUDA and "
                "the TensorRT plugin an unspecified thread (run to run); for results that do not depend on the "
                "runtime use non-overlapping pooling in the model (kernel_size == stride, e.g. 2x2 stride 2)")
