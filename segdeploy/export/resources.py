"""Resource guards: refuse shape profiles that would exhaust memory before running them.

Contract
--------
* :func:`peak_activation_bytes` runs a module once under a ``TorchDispatchMode`` that tracks the bytes of
  every live tensor the ops create (freed tensors are subtracted), and returns the peak. It works for eager
  modules, ``torch.export`` programs and TorchScript alike (all of them dispatch through ATen).
* :func:`available_memory_bytes` is what this process may still use: ``MemAvailable`` from /proc/meminfo,
  capped by a cgroup (v2 or v1) limit when one applies; None where neither can be read (then no guard).
* :func:`check_input_sizes` refuses shapes whose input tensor alone does not fit, before anything runs.
* :func:`check_profile_memory` scales the measured peak per input pixel to the profile's max shape and
  refuses a profile whose verification (PyTorch and ONNX Runtime at the max shape) would not fit, with
  the numbers and the options that fix it (:class:`~segdeploy.errors.ShapeError`, exit 2).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

from segdeploy.errors import ShapeError

# Verification holds the PyTorch run and the ONNX Runtime session (its own arena) at the max shape, plus
# inputs and outputs: budget three times the measured PyTorch peak.
VERIFY_FACTOR = 3.0
USABLE_FRACTION = 0.8


def _fmt(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} PB"


def _shape_str(s) -> str:
    return "x".join(str(v) for v in s)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> int | None:
    """Memory this process may still allocate (see the module docstring), or None when unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        avail = None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < (1 << 60):
            room = max(0, limit - usage)
            avail = room if avail is None else min(avail, room)
            break
    return avail


def peak_activation_bytes(module: Any, x: Any) -> int:
    """Peak bytes of live tensors created while ``module(x)`` runs (no gradients). Raises what the model raises."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _Peak(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self.ptrs: set[int] = set()

        def _release(self, ptr: int, n: int) -> None:
            if ptr in self.ptrs:
                self.ptrs.discard(ptr)
                self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                    continue
                try:
                    ptr, n = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                except (RuntimeError, NotImplementedError):
                    continue
                if ptr == 0 or ptr in self.ptrs:
                    continue
                self.ptrs.add(ptr)
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._release, ptr, n)
            return out

    mode = _Peak()
    with torch.inference_mode(), mode:
        module(x)
    return int(mode.peak) + int(x.numel() * x.element_size())


def check_input_sizes(shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse any shape whose float32 input tensor alone exceeds the usable memory (nothing has run yet)."""
    avail = available_memory_bytes()
    if avail is None:
        return
    for option, s in shapes.items():
        need = 4 * math.prod(s)
        if need > USABLE_FRACTION * avail:
            raise ShapeError(
                f"{option} {_shape_str(s)} needs {_fmt(need)} for the input tensor alone and this machine has "
                f"{_fmt(avail)} available; use a smaller {option}"
            )


def check_profile_memory(peak_bytes: int, probe_shape: tuple[int, ...], max_shape: tuple[int, ...],
                         max_option: str) -> dict[str, Any]:
    """Scale ``peak_bytes`` measured at ``probe_shape`` to ``max_shape``; refuse when verification would not fit.

    Returns the estimate (a dict for the manifest-free summary). Raises ShapeError (exit 2) with the numbers.
    """
    per_pixel = peak_bytes / max(1, probe_shape[0] * probe_shape[2] * probe_shape[3])
    at_max = per_pixel * max_shape[0] * max_shape[2] * max_shape[3]
    need = VERIFY_FACTOR * at_max
    avail = available_memory_bytes()
    est = {"peak_bytes_per_pixel": per_pixel, "estimated_peak_at_max_bytes": at_max,
           "estimated_verification_bytes": need, "available_bytes": avail}
    if avail is not None and need > USABLE_FRACTION * avail:
        raise ShapeError(
            f"the max shape {_shape_str(max_shape)} needs about {_fmt(need)} to verify (measured {_fmt(per_pixel)} of "
            f"activations per input pixel at {_shape_str(probe_shape)}) and {_fmt(avail)} are available; lower "
            f"{max_option} (or --max-batch)"
        )
    return est

