"""Export-friendly rewrites: a small registry of exact transformations applied while exporting.

A rewrite never touches the user's module. It acts either

* as a *function rewrite* -- a :class:`torch.overrides.TorchFunctionMode` active only while an exporter
  traces, which replaces matching calls (``nn.AdaptiveAvgPool2d`` and ``F.adaptive_avg_pool2d`` alike, and
  functional forms such as smp's ``F.interpolate(mode="area")`` export path) with an export-friendly
  equivalent; or
* as a *graph rewrite* on a ``torch.export`` program's FX graph (a deep copy), where aten ops are called
  directly.

Exactness is not assumed: the exported graph is verified against the *original* module at several
shapes, so a wrong rewrite fails verification. A match that cannot be rewritten exactly raises
:class:`RewriteRefused` with the reason (the exporter attempt then fails with that reason).

Registered rewrites:

* ``dynamic_adaptive_pool`` -- adaptive average/max pooling (PSPNet's pyramid pooling, UPerNet's PPM,
  DeepLabV3's image pooling, SE blocks). ONNX has no adaptive pooling with a dynamic input size
  (AveragePool needs static kernels), so the TorchScript exporter refuses it and the dynamo exporter bakes
  the traced size into index arithmetic that crashes at other sizes. The replacement computes PyTorch's
  exact bins from the runtime shape: bin ``i`` of ``b`` over ``H`` covers
  ``[floor(i*H/b), ceil((i+1)*H/b))``, sliced and reduced (Slice + ReduceMean/ReduceMax, which TensorRT
  runs with dynamic bounds). Output size ``None`` on an axis (keep the input size) is refused.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from segdeploy.errors import UsageError


class RewriteRefused(Exception):
    """A rewrite matched but cannot be applied exactly; the message says why."""


@dataclass(frozen=True)
class RewriteApplied:
    rewrite: str
    target: str  # what was matched: a call form or an FX node name
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"rewrite": self.rewrite, "target": self.target, "detail": self.detail}


def adaptive_pool2d(x: torch.Tensor, output_size: tuple[int, int], mode: str = "avg") -> torch.Tensor:
    """Adaptive 2-D pooling with PyTorch's exact bins, computed from the runtime shape (export-friendly)."""
    bh, bw = int(output_size[0]), int(output_size[1])
    if (bh, bw) == (1, 1):
        return x.mean((-2, -1), keepdim=True) if mode == "avg" else x.amax((-2, -1), keepdim=True)
    H, W = x.shape[-2], x.shape[-1]
    rows = []
    for i in range(bh):
        hs = (i * H) // bh
        he = ((i + 1) * H + bh - 1) // bh
        cols = []
        for j in range(bw):
            ws = (j * W) // bw
            we = ((j + 1) * W + bw - 1) // bw
            win = x[..., hs:he, ws:we]
            cols.append(win.mean((-2, -1)) if mode == "avg" else win.amax((-2, -1)))
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def _size2(size: Any, where: str) -> tuple[int, int]:
    if isinstance(size, torch.Size):
        size = tuple(size)
    h, w = (tuple(size) if isinstance(size, (tuple, list)) else (size, size))[-2:]
    if h is None or w is None:
        raise RewriteRefused(f"{where} with output size {size}: None keeps an input axis; no exact dynamic form")
    return int(h), int(w)


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


class AdaptivePoolMode(TorchFunctionMode):
    """Replaces adaptive pooling calls by :func:`adaptive_pool2d` while active; records what it replaced."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[RewriteApplied] = []

    def _note(self, target: str, size: tuple[int, int]) -> None:
        self.applied.append(RewriteApplied("dynamic_adaptive_pool", target, f"output {size[0]}x{size[1]} -> exact runtime bins"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.adaptive_avg_pool2d:
            size = _size2(_arg(args, kwargs, 1, "output_size"), "adaptive_avg_pool2d")
            self._note("adaptive_avg_pool2d", size)
            return adaptive_pool2d(args[0], size, "avg")
        if func in (F.adaptive_max_pool2d, F.adaptive_max_pool2d_with_indices):
            if func is F.adaptive_max_pool2d_with_indices or _arg(args, kwargs, 2, "return_indices", False):
                raise RewriteRefused("adaptive_max_pool2d with return_indices has no exact dynamic ONNX form")
            size = _size2(_arg(args, kwargs, 1, "output_size"), "adaptive_max_pool2d")
            self._note("adaptive_max_pool2d", size)
            return adaptive_pool2d(args[0], size, "max")
        if func is F.interpolate and _arg(args, kwargs, 3, "mode", "nearest") == "area":
            size = _arg(args, kwargs, 1, "size")
            if size is not None:  # area with a target size is adaptive average pooling
                s = _size2(size, "interpolate(mode='area')")
                self._note("interpolate(mode='area')", s)
                return adaptive_pool2d(args[0], s, "avg")
        return func(*args, **kwargs)


_FX_TARGETS = {
    "adaptive_avg_pool2d": "avg",
    "_adaptive_avg_pool2d": "avg",
}


def rewrite_graph_adaptive_pool(gm: torch.fx.GraphModule) -> list[RewriteApplied]:
    """Graph form of ``dynamic_adaptive_pool`` for torch.export programs (aten calls in an FX graph)."""
    applied: list[RewriteApplied] = []
    targets = {getattr(torch.ops.aten, n).default: m for n, m in _FX_TARGETS.items()}
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in targets:
            size = _size2(node.args[1], node.name)
            mode = targets[node.target]
            node.target = adaptive_pool2d
            node.args = (node.args[0], size, mode)
            applied.append(RewriteApplied("dynamic_adaptive_pool", node.name, f"aten adaptive pool {size[0]}x{size[1]} -> exact runtime bins"))
    if applied:
        gm.recompile()
    return applied


@dataclass(frozen=True)
class Rewrite:
    name: str
    description: str
    mode: Callable[[], TorchFunctionMode] | None  # function rewrite active while tracing
    graph: Callable[[torch.fx.GraphModule], list[RewriteApplied]] | None  # FX graph rewrite


REGISTRY: dict[str, Rewrite] = {
    "dynamic_adaptive_pool": Rewrite(
        "dynamic_adaptive_pool",
        "adaptive avg/max pooling with dynamic H/W -> exact runtime-shape bins (Slice + ReduceMean/Max)",
        AdaptivePoolMode,
        rewrite_graph_adaptive_pool,
    ),
}


def resolve(names: tuple[str, ...] | list[str] | None) -> list[Rewrite]:
    """The rewrites to apply (None: all registered), in registry order. Raises UsageError on unknown names."""
    if names is None:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UsageError(f"unknown rewrite(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return [r for n, r in REGISTRY.items() if n in names]


def apply_graph_rewrites(module: Any, rewrites: list[Rewrite]) -> list[RewriteApplied]:
    """Apply the graph rewrites to ``module`` in place when it is an FX GraphModule (a torch.export program)."""
    applied: list[RewriteApplied] = []
    gm = module
    # the loader may wrap the program for output selection
    if not isinstance(gm, torch.fx.GraphModule) and isinstance(getattr(gm, "model", None), torch.fx.GraphModule):
        gm = gm.model
    if isinstance(gm, torch.fx.GraphModule):
        for r in rewrites:
            if r.graph is not None:
                applied += r.graph(gm)
    return applied


@contextlib.contextmanager
def function_rewrites(rewrites: list[Rewrite]) -> Iterator[list[RewriteApplied]]:
    """Activate the function rewrites; yields a list that holds what they replaced once the block ends."""
    applied: list[RewriteApplied] = []
    modes = [r.mode() for r in rewrites if r.mode is not None]
    with contextlib.ExitStack() as stack:
        for m in modes:
            stack.enter_context(m)
        try:
            yield applied
        finally:
            for m in modes:
                applied += getattr(m, "applied", [])
