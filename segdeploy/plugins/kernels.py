"""ctypes bindings of the CUDA kernels' C ABI (csrc/capi.h) and of their host reference build.

Contract:
    ``load_kernels(path=None)`` -> :class:`Kernels` over ``libsegdeploy_kernels.so`` (built by
    ``segdeploy plugins build``); tensors must be contiguous CUDA tensors and the calls run on the current
    torch CUDA stream. ``load_host_reference(path)`` -> :class:`Kernels` over
    ``libsegdeploy_kernels_hostref.so``: the same per-element kernel bodies compiled for the CPU, taking CPU
    tensors (used by the CPU tests to check the kernels' semantics without a GPU).
    Methods return new tensors; the unpool also returns the number of out-of-range indices it skipped.
Raises:
    :class:`KernelError` (a SegdeployError) with the library's one-line reason for invalid arguments or a
    failed launch; :class:`~segdeploy.errors.ArtifactError` when the library file is missing/unloadable.
torch is imported lazily (it is a base dependency, but importing it is slow).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segdeploy.errors import ArtifactError, SegdeployError

if TYPE_CHECKING:  # pragma: no cover
    import torch

KERNELS_LIB_ENV = "SEGDEPLOY_KERNELS_LIB"
ABI_VERSION = 1
UNPOOL_ALGOS = {"auto": 0, "scatter": 1, "gather": 2}
ROI_PATHS = {"auto": 0, "direct": 1, "table": 2}  # host reference only
POOL_PATHS = {"auto": 0, "generic": 1, "wide": 2}  # host reference only ("wide": 64-bit linear indexing)
UNPOOL_PATHS = {"auto": 0, "wide": 2}  # host reference only


class KernelError(SegdeployError):
    """A kernel rejected its arguments or failed to launch."""


_i32, _i64, _f32, _vp = ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise KernelError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


def _dtype_code(t: "torch.Tensor", what: str) -> int:
    import torch

    codes = {torch.float32: 0, torch.float16: 1}
    if t.dtype not in codes:
        raise KernelError(f"{what} must be float32 or float16, got {t.dtype}")
    return codes[t.dtype]


def _index_code(dtype: "torch.dtype", what: str) -> int:
    import torch

    codes = {torch.int32: 0, torch.int64: 1}
    if dtype not in codes:
        raise KernelError(f"{what} must be int32 or int64, got {dtype}")
    return codes[dtype]


@dataclass(frozen=True)
class UnpoolResult:
    """max_unpool2d output and the number of out-of-range indices that were skipped."""

    output: "torch.Tensor"
    invalid_indices: int


class Kernels:
    """The three kernels of one loaded library (device build or host reference)."""

    def __init__(self, lib: ctypes.CDLL, path: Path, host: bool):
        self._lib = lib
        self.path = path
        self.host = host
        p = "sdref_" if host else "sd_"
        tail = [_i32] if host else [_vp]  # host: path selector; device: stream
        f = getattr(lib, p + "maxpool2d_with_indices")
        f.argtypes = [_vp, _vp, _vp, _i32, _i32, _i64, _i64, _i64, _i64] + [_i32] * 9 + tail
        f.restype = _i32
        self._pool = f
        f = getattr(lib, p + "maxunpool2d")
        # host: (..., algo, int32* counters, path); device: (..., algo, void* workspace, stream)
        f.argtypes = [_vp, _vp, _vp, _i32, _i32] + [_i64] * 6 + [_i32] * 7 + [_vp] + tail
        f.restype = _i32
        self._unpool = f
        f = getattr(lib, p + "maxunpool2d_gather_eligible")
        f.argtypes = [_i32] * 6 + [_i64] * 4
        f.restype = _i32
        self._eligible = f
        f = getattr(lib, p + "roi_align")
        f.argtypes = [_vp, _vp, _vp, _vp, _i32, _i32, _i32] + [_i64] * 5 + [_i32, _i32, _f32, _i32, _i32] + tail
        f.restype = _i32
        self._roi = f
        self._last_error = getattr(lib, p + "last_error")
        self._last_error.restype = ctypes.c_char_p
        if not host:
            lib.sd_error_string.argtypes = [_i32]
            lib.sd_error_string.restype = ctypes.c_char_p
            lib.sd_maxunpool2d_workspace_size.restype = ctypes.c_size_t
            lib.sd_abi_version.restype = _i32
            if lib.sd_abi_version() != ABI_VERSION:
                raise ArtifactError(
                    f"{path} has C ABI version {lib.sd_abi_version()}, this segdeploy needs {ABI_VERSION}; "
                    "rebuild it with `segdeploy plugins build`"
                )

    # -- helpers ---------------------------------------------------------------------------------------
    def _check(self, rc: int, op: str) -> None:
        if rc == 0:
            return
        why = (self._last_error() or b"").decode()
        if not why and not self.host:
            why = self._lib.sd_error_string(rc).decode()
        raise KernelError(f"{op} failed: {why or f'error code {rc}'}")

    def _tensor(self, t: "torch.Tensor", what: str) -> "torch.Tensor":
        want_cuda = not self.host
        if t.is_cuda != want_cuda:
            where = "CUDA" if want_cuda else "CPU"
            raise KernelError(f"{what} must be a {where} tensor for this library ({self.path.name})")
        return t.contiguous()

    def _tail(self, path_code: int) -> int | None:
        if self.host:
            return path_code
        import torch

        return torch.cuda.current_stream().cuda_stream

    # -- kernels ---------------------------------------------------------------------------------------
    def max_pool2d_with_indices(
        self,
        x: "torch.Tensor",
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        ceil_mode: bool = False,
        index_dtype: "torch.dtype | None" = None,
        path: str = "auto",
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """F.max_pool2d(x, ..., return_indices=True) for NCHW x; indices int64 by default (PyTorch)."""
        import torch

        x = self._tensor(x, "input")
        if x.dim() != 4:
            raise KernelError(f"input must be NCHW (4-D), got shape {tuple(x.shape)}")
        kh, kw = _pair(kernel_size, "kernel_size")
        sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
        ph, pw = _pair(padding, "padding")
        dh, dw = _pair(dilation, "dilation")
        index_dtype = index_dtype or torch.int64
        n, c, h, w = x.shape
        oh = _out_size(h, kh, sh, ph, dh, ceil_mode)
        ow = _out_size(w, kw, sw, pw, dw, ceil_mode)
        out = torch.empty((n, c, max(oh, 0), max(ow, 0)), dtype=x.dtype, device=x.device)
        idx = torch.empty(out.shape, dtype=index_dtype, device=x.device)
        rc = self._pool(
            x.data_ptr(), out.data_ptr(), idx.data_ptr(), _dtype_code(x, "input"),
            _index_code(index_dtype, "index_dtype"), n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw,
            int(ceil_mode), self._tail(POOL_PATHS[path]),
        )
        self._check(rc, "max_pool2d_with_indices")
        return out, idx

    def gather_eligible(self, kernel_size, stride, padding, in_hw, out_hw) -> bool:
        kh, kw = _pair(kernel_size, "kernel_size")
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        return bool(self._eligible(kh, kw, sh, sw, ph, pw, in_hw[0], in_hw[1], out_hw[0], out_hw[1]))

    def max_unpool2d(
        self,
        x: "torch.Tensor",
        indices: "torch.Tensor",
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        output_size: tuple[int, int] | None = None,
        algo: str = "auto",
        path: str = "auto",
    ) -> UnpoolResult:
        """F.max_unpool2d for NCHW x; out-of-range indices are skipped and counted (not an error)."""
        import torch

        x = self._tensor(x, "input")
        indices = self._tensor(indices, "indices")
        if x.dim() != 4 or indices.shape != x.shape:
            raise KernelError(f"input and indices must be NCHW of one shape, got {tuple(x.shape)} and {tuple(indices.shape)}")
        if algo not in UNPOOL_ALGOS:
            raise KernelError(f"algo must be one of {sorted(UNPOOL_ALGOS)}, got {algo!r}")
        kh, kw = _pair(kernel_size, "kernel_size")
        sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
        ph, pw = _pair(padding, "padding")
        n, c, ih, iw = x.shape
        if output_size is None:
            oh, ow = (ih - 1) * sh - 2 * ph + kh, (iw - 1) * sw - 2 * pw + kw
        else:
            oh, ow = (int(v) for v in tuple(output_size)[-2:])
        out = torch.empty((n, c, max(oh, 0), max(ow, 0)), dtype=x.dtype, device=x.device)
        counters = torch.zeros(2, dtype=torch.int32, device=x.device)
        rc = self._unpool(
            x.data_ptr(), indices.data_ptr(), out.data_ptr(), _dtype_code(x, "input"),
            _index_code(indices.dtype, "indices"), n, c, ih, iw, oh, ow, kh, kw, sh, sw, ph, pw,
            UNPOOL_ALGOS[algo], counters.data_ptr(), self._tail(UNPOOL_PATHS[path]),
        )
        self._check(rc, "max_unpool2d")
        return UnpoolResult(out, int(counters[1].item()))

    def roi_align(
        self,
        x: "torch.Tensor",
        boxes: "torch.Tensor",
        output_size: int | tuple[int, int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        aligned: bool = False,
        batch_indices: "torch.Tensor | None" = None,
        path: str = "auto",
    ) -> "torch.Tensor":
        """torchvision.ops.roi_align(x, boxes[K,5], ...); or boxes [K,4] + batch_indices [K] (int32/int64)."""
        import torch

        x = self._tensor(x, "input")
        boxes = self._tensor(boxes, "boxes")
        cols = 5 if batch_indices is None else 4
        if x.dim() != 4 or boxes.dim() != 2 or boxes.shape[1] != cols:
            raise KernelError(f"need NCHW input and boxes [K,{cols}], got {tuple(x.shape)} and {tuple(boxes.shape)}")
        bi_ptr, bi_code = None, 0
        if batch_indices is not None:
            batch_indices = self._tensor(batch_indices, "batch_indices")
            if batch_indices.shape != (boxes.shape[0],):
                raise KernelError(f"batch_indices must have shape [{boxes.shape[0]}], got {tuple(batch_indices.shape)}")
            bi_code = _index_code(batch_indices.dtype, "batch_indices")
            bi_ptr = batch_indices.data_ptr()
        poh, pow_ = _pair(output_size, "output_size")
        n, c, h, w = x.shape
        k = boxes.shape[0]
        out = torch.empty((k, c, max(poh, 0), max(pow_, 0)), dtype=x.dtype, device=x.device)
        rc = self._roi(
            x.data_ptr(), boxes.data_ptr(), bi_ptr, out.data_ptr(), _dtype_code(x, "input"),
            _dtype_code(boxes, "boxes"), bi_code, n, c, h, w, k, poh, pow_, float(spatial_scale),
            int(sampling_ratio), int(aligned), self._tail(ROI_PATHS[path]),
        )
        self._check(rc, "roi_align")
        return out


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (same formula as maxPool2dOutputSize in the C++ header)."""
    if s < 1:
        return 0
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def default_library_path() -> Path:
    """$SEGDEPLOY_KERNELS_LIB, else the default build dir's lib/libsegdeploy_kernels.so."""
    env = os.environ.get(KERNELS_LIB_ENV)
    if env:
        return Path(env)
    from segdeploy.plugins.locate import DEFAULT_BUILD_DIR

    return Path(DEFAULT_BUILD_DIR) / "lib" / "libsegdeploy_kernels.so"


def _open(path: Path) -> ctypes.CDLL:
    if not path.is_file():
        raise ArtifactError(f"kernel library {path} not found; build it with `segdeploy plugins build`")
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        raise ArtifactError(f"cannot load kernel library {path}: {' '.join(str(e).split())}") from e


def load_kernels(path: str | os.PathLike | None = None) -> Kernels:
    """Load the device library (libsegdeploy_kernels.so)."""
    p = Path(path) if path is not None else default_library_path()
    return Kernels(_open(p), p, host=False)


def load_host_reference(path: str | os.PathLike) -> Kernels:
    """Load the host reference library (libsegdeploy_kernels_hostref.so, CPU tensors)."""
    p = Path(path)
    return Kernels(_open(p), p, host=True)
