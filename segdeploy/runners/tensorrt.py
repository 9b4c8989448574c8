"""TensorRT runner: run a serialized engine (plan) behind the common Runner interface.

``TensorRTRunner(engine_path, TensorRTOptions(...))`` -- construction imports the TensorRT module (the full
``tensorrt`` by default; the lean runtime ``tensorrt_lean_bindings`` / ``tensorrt_lean`` with ``runtime="lean"``,
which runs version-compatible plans only) and raises :class:`~segdeploy.errors.MissingDependencyError` with the
install hint when it is missing. Never a fake result.

``open()``, in this order:

1. read the plan header without TensorRT (:mod:`segdeploy.trt.plan`) and refuse a plan built by another
   TensorRT version with both versions in the message (:class:`~segdeploy.trt.plan.PlanVersionError`) -- before
   anything is deserialized; ``version_compatible=True`` accepts older plans within TensorRT's forward range;
2. ``trt.Runtime(logger)``: an error logged here (no GPU, driver too old) becomes
   :class:`TensorRTRuntimeError`, one line quoting TensorRT;
3. torch with CUDA must be there (device buffers are torch CUDA tensors; no pycuda);
4. the plugin library (``plugin_library``; else, when the manifest beside the engine says the engine needs one,
   the one :func:`segdeploy.plugins.locate.locate_library` finds, UsageError when there is none) is loaded into
   the runtime's registry before deserializing; ``engine_host_code_allowed`` is set only with ``trust_host_code``
   (version-compatible plans and serialized plugins carry code: trusted plans only);
5. ``deserialize_cuda_engine``; None -> :class:`~segdeploy.errors.ModelLoadError` with TensorRT's error;
6. one execution context, a non-default CUDA stream, pinned host staging and device buffers sized for the
   optimization profile's max shape.

``infer(batch)`` (float32 NCHW numpy): the shape must lie in the engine's optimization profile, else
:class:`~segdeploy.errors.ShapeError` naming the profile; ``set_input_shape``, H2D copy, ``set_tensor_address``
for every I/O tensor, ``execute_async_v3(stream)``, D2H copy of the output ("logits" unless ``output_name``),
stream synchronised before returning. FP16/BF16 outputs are returned as float32. Each call records CUDA-event
timings in ``runner.last_split`` / ``runner.splits`` (``h2d_ms``, ``compute_ms``, ``d2h_ms``, ``total_ms``);
:meth:`TensorRTRunner.timing_split_summary` reduces them (for a benchmark tool).

Features are detected with ``hasattr`` (TensorRT 8.6 / 10.x / 11.x), never by enum integers.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdeploy.errors import MissingDependencyError, ModelLoadError, SegdeployError, ShapeError, UsageError
from segdeploy.runners.base import Runner
from segdeploy.vocab import OUTPUT_NAME

INSTALL_HINT = (
    "install TensorRT (pip install tensorrt on an x86 CUDA machine, or JetPack's python3-libnvinfer on a Jetson)"
)
LEAN_HINT = "pip install tensorrt-lean-cu12-bindings tensorrt-lean-cu12-libs (CUDA 12; -cu13- for CUDA 13)"
RUNTIMES = ("auto", "full", "lean")
LEAN_MODULES = ("tensorrt_lean_bindings", "tensorrt_lean")
_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
           "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


class TensorRTRuntimeError(SegdeployError):
    """TensorRT could not start its runtime (no GPU, no driver, driver too old) or an execution failed."""


@dataclass(frozen=True)
class TensorRTOptions:
    """Runner options.

    device_index: CUDA device; plugin_library: segdeploy's (or any) TensorRT plugin library to load first;
    trust_host_code: allow plans that carry code (version-compatible plans, serialized plugins);
    runtime: "auto"/"full" (``tensorrt``) or "lean" (the lean runtime: version-compatible plans only);
    version_compatible: the plan was built version-compatible (an older TensorRT's plan is accepted);
    input_name / output_name: default the engine's only input / "logits" (else the first output);
    verbose: keep TensorRT's verbose log (``runner.log_text()``).
    """

    device_index: int = 0
    plugin_library: str | None = None
    trust_host_code: bool = False
    runtime: str = "auto"
    version_compatible: bool = False
    input_name: str | None = None
    output_name: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise UsageError(f"TensorRT runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if not isinstance(self.device_index, int) or self.device_index < 0:
            raise UsageError(f"device index must be an integer >= 0, got {self.device_index!r}")


def import_runtime_module(runtime: str, engine_name: str) -> Any:
    """The TensorRT module for ``runtime`` ("auto"/"full" -> tensorrt, "lean" -> the lean bindings)."""
    if runtime == "lean":
        for name in LEAN_MODULES:
            try:
                return importlib.import_module(name)
            except ImportError:
                continue
        raise MissingDependencyError(
            f"running engine {engine_name} on the lean runtime needs TensorRT's lean Python module "
            f"({' or '.join(LEAN_MODULES)}), which is not installed; {LEAN_HINT}"
        )
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        raise MissingDependencyError(
            f"running engine {engine_name} needs TensorRT, which is not installed; {INSTALL_HINT}"
        ) from None


def _plugin_library(engine_path: str, name: str, given: str | None) -> str | None:
    """``given``, else -- when the manifest beside the engine says it needs one -- the located plugin library
    (:func:`segdeploy.plugins.locate.locate_library`: $SEGDEPLOY_PLUGINS, the `segdeploy plugins build` output)."""
    if given:
        if not os.path.isfile(given):
            raise UsageError(f"plugin library {given} not found; build it with `segdeploy plugins build`")
        return given
    from segdeploy.plugins.locate import locate_library, manifest_hint

    needed = manifest_hint(engine_path).library
    if not needed:
        return None
    return str(locate_library(needed_by=f"{name} needs the plugin library {needed} (its manifest says so)"))


def _fmt(shape: Any) -> str:
    return "x".join(str(int(d)) for d in shape)


class TensorRTRunner(Runner):
    kind = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, options: TensorRTOptions | None = None, *,
                 trt_module: Any = None):
        self.path = os.fspath(engine_path)
        self.options = options or TensorRTOptions()
        super().__init__(os.path.basename(self.path))
        self.trt = trt_module if trt_module is not None else import_runtime_module(self.options.runtime, self.name)
        self.header = None
        self.plugin_library: str | None = None  # the library loaded (given, or located for an engine that needs it)
        self.warnings: list[str] = []
        self.splits: list[dict[str, float]] = []
        self.last_split: dict[str, float] | None = None
        self._logger = None
        self._runtime = self._engine = self._context = self._stream = None
        self._buffers: dict[str, Any] = {}
        self._host_in = self._host_out = None
        self._profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None
        self._input = self._output = None
        self._dtypes: dict[str, Any] = {}
        self._dynamic_outputs: list[str] = []  # outputs whose shape TensorRT only knows after running

    # ------------------------------------------------------------------------------------------ open
    def _open(self) -> None:
        from segdeploy.trt.capabilities import probe
        from segdeploy.trt.logger import abandon, make_logger
        from segdeploy.trt.plan import check_plan_version, read_plan_header

        trt, opts = self.trt, self.options
        header = read_plan_header(self.path)  # ArtifactError / NotAPlanError
        warning = check_plan_version(header, str(trt.__version__), version_compatible=opts.version_compatible)
        if warning:
            self.warnings.append(warning)
        self.header = header
        caps = probe(trt)
        if not (caps.execute_async_v3 and caps.tensor_api):
            raise MissingDependencyError(f"{caps.describe()} lacks the name-based tensor API (execute_async_v3); "
                                         f"segdeploy runs engines with TensorRT 8.6 or newer; {INSTALL_HINT}")
        self.plugin_library = _plugin_library(self.path, self.name, opts.plugin_library)
        if opts.trust_host_code and not caps.engine_host_code:
            raise MissingDependencyError(f"{caps.describe()} cannot run plans that carry code "
                                         "(no Runtime.engine_host_code_allowed); use TensorRT 8.6 or newer")
        logger = make_logger(trt, verbose=opts.verbose)
        self._logger = logger
        torch = self._torch_if_cuda()
        with self._device(torch):
            mark = logger.mark()
            runtime = trt.Runtime(logger)
            err = logger.first_error(mark)
            if err is not None:
                abandon(runtime)  # wraps a null handle: destroying it would crash the process
                raise TensorRTRuntimeError(f"{caps.describe()} could not start its runtime: {err}; run the engine on a "
                                           "machine with an NVIDIA GPU and a driver that supports this TensorRT")
            self._runtime = runtime
            if torch is None:
                raise MissingDependencyError(
                    f"running {self.name} needs torch with CUDA (device buffers), but torch.cuda.is_available() is "
                    "False; install a CUDA build of torch (pip install torch) on the GPU machine"
                )
            if self.plugin_library:
                self._load_plugins(runtime, logger, caps)
            if opts.trust_host_code:
                runtime.engine_host_code_allowed = True
            with open(self.path, "rb") as f:
                plan = f.read()
            mark = logger.mark()
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                detail = logger.last_error(mark) or "deserialize_cuda_engine returned None"
                hint = ("a version-compatible plan carries code: allow it (TensorRTOptions.trust_host_code) only "
                        "for a plan you trust"
                        if not opts.trust_host_code and ("host code" in detail.lower() or "version compat" in detail.lower())
                        else "rebuild the engine on this machine (segdeploy build)")
                raise ModelLoadError(f"{caps.describe()} could not load {self.name}: {detail}; {hint}")
            self._engine = engine
            self._setup_io(trt, torch, engine)

    def _torch_if_cuda(self) -> Any:
        try:
            import torch
        except ImportError:
            return None
        return torch if torch.cuda.is_available() else None

    def _device(self, torch: Any) -> Any:
        import contextlib

        if torch is None:
            return contextlib.nullcontext()
        if self.options.device_index >= torch.cuda.device_count():
            raise UsageError(f"CUDA device {self.options.device_index} does not exist "
                             f"({torch.cuda.device_count()} visible); choose another device index")
        return torch.cuda.device(self.options.device_index)

    def _load_plugins(self, runtime: Any, logger: Any, caps: Any) -> None:
        lib = self.plugin_library
        registry = runtime.get_plugin_registry() if hasattr(runtime, "get_plugin_registry") else self.trt.get_plugin_registry()
        mark = logger.mark()
        if caps.plugin_load_library:
            handle = registry.load_library(str(lib))
            if handle is None and logger.errors(mark):
                raise ModelLoadError(f"{caps.describe()} could not load the plugin library {lib}: "
                                     f"{logger.last_error(mark)}; rebuild it for this TensorRT (segdeploy plugins build)")
        else:
            import ctypes

            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                raise ModelLoadError(f"cannot load the plugin library {lib}: {e}") from None

    def _setup_io(self, trt: Any, torch: Any, engine: Any) -> None:
        names = [engine.get_tensor_name(i) for i in range(int(engine.num_io_tensors))]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if self.options.input_name:
            if self.options.input_name not in inputs:
                raise ModelLoadError(f"{self.name} has no input {self.options.input_name!r} (inputs: {', '.join(inputs)})")
            self._input = self.options.input_name
        elif len(inputs) == 1:
            self._input = inputs[0]
        else:
            raise ModelLoadError(f"{self.name} has {len(inputs)} inputs ({', '.join(inputs)}); a segmentation engine "
                                 "needs one image input (or pass input_name)")
        want = self.options.output_name or (OUTPUT_NAME if OUTPUT_NAME in outputs else (outputs[0] if outputs else None))
        if want not in outputs:
            raise ModelLoadError(f"{self.name} has no output {want!r} (outputs: {', '.join(outputs)})")
        self._output = want
        for n in names:
            dt = engine.get_tensor_dtype(n)
            name = getattr(dt, "name", str(dt).rsplit(".", 1)[-1])
            if name not in _DTYPES:
                raise ModelLoadError(f"{self.name}: tensor {n} has type {name}, which this runner does not handle")
            self._dtypes[n] = getattr(torch, _DTYPES[name])
        pmin, popt, pmax = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(self._input, 0))
        self._profile = (pmin, popt, pmax)
        ctx = engine.create_execution_context()
        if ctx is None:
            raise TensorRTRuntimeError(f"{self.name}: TensorRT could not create an execution context "
                                       f"({self._logger.last_error() or 'out of GPU memory?'}); free GPU memory and retry")
        self._context = ctx
        dev = torch.device("cuda", self.options.device_index)
        self._stream = torch.cuda.Stream(device=dev)
        if not ctx.set_input_shape(self._input, pmax):
            raise TensorRTRuntimeError(f"{self.name}: TensorRT refused the profile's max shape {_fmt(pmax)}")
        self._buffers = {self._input: torch.empty(int(np.prod(pmax)), dtype=self._dtypes[self._input], device=dev)}
        self._host_in = torch.empty(int(np.prod(pmax)), dtype=self._dtypes[self._input], pin_memory=True)
        for n in outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                if n == self._output and not self.options.output_name and len(outputs) == 1:
                    raise ModelLoadError(f"{self.name}: output {n} has a data-dependent shape {shape}; a segmentation "
                                         "engine's score map must follow from the input shape")
                # detection-style outputs (boxes, scores, masks of N instances): allocated on demand at run time
                self._dynamic_outputs.append(n)
                continue
            self._buffers[n] = torch.empty(int(np.prod(shape)), dtype=self._dtypes[n], device=dev)
            if n == self._output:  # pinned host staging for the D2H copy (bfloat16 is returned as float32)
                host_dtype = torch.float32 if self._dtypes[n] == torch.bfloat16 else self._dtypes[n]
                self._host_out = torch.empty(int(np.prod(shape)), dtype=host_dtype, pin_memory=True)

    # ----------------------------------------------------------------------------------------- infer
    def _check_profile(self, shape: tuple[int, ...]) -> None:
        pmin, popt, pmax = self._profile  # type: ignore[misc]
        if len(shape) != len(pmin) or any(not lo <= s <= hi for s, lo, hi in zip(shape, pmin, pmax)):
            raise ShapeError(
                f"{self.name}: input shape {_fmt(shape)} is outside the engine's optimization profile "
                f"(min {_fmt(pmin)}, opt {_fmt(popt)}, max {_fmt(pmax)}); resize or pad the input into that range, "
                "or rebuild the engine with a profile that covers it"
            )

    def _bind(self, shape: tuple[int, ...]) -> tuple[Any, dict[str, Any]]:
        """Set the input shape and every preallocated tensor's address -> (device input view, output views)."""
        ctx, trt_in = self._context, self._input
        if not ctx.set_input_shape(trt_in, shape):
            raise ShapeError(f"{self.name}: TensorRT refused input shape {_fmt(shape)} "
                             f"({self._logger.last_error() or 'no detail'})")
        dev_in = self._buffers[trt_in][: int(np.prod(shape))].view(shape)
        ctx.set_tensor_address(trt_in, dev_in.data_ptr())
        views = {}
        for n, buf in self._buffers.items():
            if n == trt_in:
                continue
            oshape = tuple(int(d) for d in ctx.get_tensor_shape(n))
            views[n] = buf[: int(np.prod(oshape))].view(oshape)
            ctx.set_tensor_address(n, views[n].data_ptr())
        return dev_in, views

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        shape = tuple(int(d) for d in batch.shape)
        self._check_profile(shape)
        ctx, out_name = self._context, self._output
        numel = int(np.prod(shape))
        with torch.cuda.device(self.options.device_index):
            dev_in, views = self._bind(shape)
            host = self._host_in[:numel].view(shape)
            host.copy_(torch.from_numpy(batch))  # casts to the engine's input type (FP16 inputs)
            events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            stream = self._stream
            mark = self._logger.mark()
            with torch.cuda.stream(stream):
                events[0].record(stream)
                dev_in.copy_(host, non_blocking=True)
                events[1].record(stream)
                ok = ctx.execute_async_v3(stream.cuda_stream)
                events[2].record(stream)
                out_dev = views[out_name]
                if out_dev.dtype == torch.bfloat16:  # numpy has no bfloat16
                    out_dev = out_dev.float()
                out_host = self._host_out[: out_dev.numel()].view(out_dev.shape)
                out_host.copy_(out_dev, non_blocking=True)
                events[3].record(stream)
            stream.synchronize()
        if not ok:
            raise TensorRTRuntimeError(f"{self.name}: execute_async_v3 failed on input {_fmt(shape)}: "
                                       f"{self._logger.last_error(mark) or 'no detail from TensorRT'}")
        self.last_split = {
            "h2d_ms": events[0].elapsed_time(events[1]),
            "compute_ms": events[1].elapsed_time(events[2]),
            "d2h_ms": events[2].elapsed_time(events[3]),
            "total_ms": events[0].elapsed_time(events[3]),
        }
        self.splits.append(self.last_split)
        out = out_host.numpy()  # a view of the staging buffer: copy it out before the next call
        return out.astype(np.float32) if out.dtype != np.float32 else out.copy()

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (instance models); data-dependent shapes through an IOutputAllocator."""
        import torch

        trt = self.trt
        shape = tuple(int(d) for d in x.shape)
        self._check_profile(shape)
        ctx = self._context
        if self._dynamic_outputs and not hasattr(trt, "IOutputAllocator"):
            raise ModelLoadError(f"{self.name} has data-dependent outputs ({', '.join(self._dynamic_outputs)}) and "
                                 f"{getattr(trt, '__version__', 'this TensorRT')} has no IOutputAllocator")
        with torch.cuda.device(self.options.device_index):
            dev_in, views = self._bind(shape)
            dev_in.copy_(torch.from_numpy(x).to(dev_in.dtype))
            allocator = _output_allocator(trt, torch, self._dtypes) if self._dynamic_outputs else None
            for n in self._dynamic_outputs:
                ctx.set_output_allocator(n, allocator)
            mark = self._logger.mark()
            ok = ctx.execute_async_v3(self._stream.cuda_stream)
            self._stream.synchronize()
            if not ok:
                raise TensorRTRuntimeError(f"{self.name}: execute_async_v3 failed on input {_fmt(shape)}: "
                                           f"{self._logger.last_error(mark) or 'no detail from TensorRT'}")
            for n in self._dynamic_outputs:
                views[n] = allocator.view(n)
            out = {}
            for n, v in views.items():
                v = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
                out[n] = v.cpu().numpy().copy()
        return out

    def timing_split_summary(self) -> dict[str, Any]:
        """Per component (h2d_ms, compute_ms, d2h_ms, total_ms): mean and median over the calls so far."""
        if not self.splits:
            return {"calls": 0}
        out: dict[str, Any] = {"calls": len(self.splits)}
        for k in ("h2d_ms", "compute_ms", "d2h_ms", "total_ms"):
            v = np.asarray([s[k] for s in self.splits], dtype=np.float64)
            out[k] = {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min())}
        return out

    def log_text(self) -> str:
        """TensorRT's log for this runner (VERBOSE messages only with ``verbose``)."""
        return self._logger.text() if self._logger is not None else ""

    # ----------------------------------------------------------------------------------------- close
    def _close(self) -> None:
        self._buffers = {}
        self._host_in = self._host_out = None
        self._context = None
        self._engine = None
        self._stream = None
        self._runtime = None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({
            "path": self.path,
            "tensorrt": str(getattr(self.trt, "__version__", "unknown")),
            "module": str(getattr(self.trt, "__name__", "tensorrt")),
            "plan_header": list(self.header.version) if self.header is not None and self.header.version else None,
            "input": self._input,
            "output": self._output,
            "profile": {k: list(v) for k, v in zip(("min", "opt", "max"), self._profile)} if self._profile else None,
            "device_index": self.options.device_index,
            "plugin_library": self.plugin_library,
            "warnings": list(self.warnings),
        })
        return d


def _output_allocator(trt: Any, torch: Any, dtypes: dict[str, Any]) -> Any:
    """An ``IOutputAllocator`` backed by torch CUDA tensors (TensorRT asks for memory once it knows the size)."""

    class _Allocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):  # noqa: ARG002
            nbytes = max(int(size), 1)
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.numel() < nbytes:
                buf = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
                self.buffers[tensor_name] = buf
            return buf.data_ptr()

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):  # noqa: ARG002
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

        def view(self, name: str) -> Any:
            shape = self.shapes.get(name, (0,))
            dtype = dtypes[name]
            n = int(np.prod(shape))
            if n == 0:
                return torch.empty(shape, dtype=dtype, device="cuda")
            return self.buffers[name].view(dtype)[:n].view(shape)

    return _Allocator()

