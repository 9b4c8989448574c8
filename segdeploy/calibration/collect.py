"""Streaming range collection with ONNX Runtime on the FP32 ONNX.

Contract
--------
:func:`collect_statistics` makes an in-memory copy of the model whose graph outputs are the chosen
tensors (default :func:`calibratable_tensors`: every graph input and every float node output that is not
a constant), runs it batch by batch on the CPU and folds each tensor into a :class:`TensorHistogram`.
Only one batch of activations is alive at a time, so memory does not grow with the number of images.
A NaN or Inf in any collected tensor raises :class:`~segdeploy.errors.DataError` naming the tensor and the
batch's files.

:class:`TensorHistogram` -- histogram of ``|x|`` over ``[0, R)`` with ``num_bins`` bins (2048 like TensorRT)
where ``R`` is always a power of two strictly above the running max. When a batch exceeds ``R`` the range
grows by ``2**k`` and every ``2**k`` adjacent bins merge into one: because bin index = floor(|x| * n / R)
with power-of-two ``n / R``, the merged histogram is bit-identical to a one-shot histogram of all data
over the final range (tested). It also keeps the exact running max of ``|x|`` and the element count.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from segdeploy.errors import ArtifactError, DataError, MissingDependencyError, UsageError

_PROTO_LIMIT = 2**31 - 1  # protobuf's serialisation limit
_FLOAT_TYPES = {1, 10, 11, 16}  # onnx TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


class NonFiniteError(ValueError):
    """A NaN or Inf reached :meth:`TensorHistogram.update`; ``args[0]`` is "NaN" or "Inf"."""


class TensorHistogram:
    """Streaming histogram of |x| with exact power-of-two re-binning (see module docstring)."""

    __slots__ = ("num_bins", "hist", "range_max", "absmax", "count")

    def __init__(self, num_bins: int = 2048):
        if num_bins < 2 or num_bins & (num_bins - 1):
            raise UsageError(f"histogram bins must be a power of two >= 2, got {num_bins}")
        self.num_bins = num_bins
        self.hist = np.zeros(num_bins, dtype=np.int64)
        self.range_max = 0.0  # R: power of two > absmax (0 while only zeros were seen)
        self.absmax = 0.0
        self.count = 0

    @property
    def bin_width(self) -> float:
        return self.range_max / self.num_bins if self.range_max else 0.0

    @property
    def edges(self) -> np.ndarray:
        return np.arange(self.num_bins + 1, dtype=np.float64) * self.bin_width

    @staticmethod
    def _range_for(m: float) -> float:
        # smallest power of two strictly greater than m (m > 0)
        return math.ldexp(1.0, math.frexp(m)[1])

    def _grow(self, new_range: float) -> None:
        if self.range_max == 0.0:
            self.range_max = new_range  # only zeros so far: they stay in bin 0
            return
        f = int(round(new_range / self.range_max))
        if f <= 1:
            return
        n = self.num_bins
        if f >= n:
            merged = np.zeros(n, dtype=np.int64)
            merged[0] = self.hist.sum()
        else:
            merged = np.zeros(n, dtype=np.int64)
            merged[: n // f] = self.hist.reshape(n // f, f).sum(axis=1)
        self.hist = merged
        self.range_max = new_range

    def update(self, x: np.ndarray) -> None:
        """Fold one array in. Raises NonFiniteError (nothing folded) when it holds a NaN or Inf."""
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size == 0:
            return
        a = np.abs(x)
        m = float(a.max())
        if not math.isfinite(m):  # max propagates NaN
            raise NonFiniteError("NaN" if math.isnan(m) else "Inf")
        self.count += int(x.size)
        if m > self.absmax:
            self.absmax = m
        if m > 0.0 and m >= self.range_max:
            self._grow(self._range_for(m))
        if self.range_max == 0.0:
            self.hist[0] += x.size
            return
        # bin = floor(|x| * (n / R)): exact in float32 (power-of-two factor) and < n because |x| < R
        a *= np.float32(self.num_bins / self.range_max)
        self.hist += np.bincount(a.astype(np.intp), minlength=self.num_bins)

    def merge(self, other: "TensorHistogram") -> None:
        """Add another histogram of the same bin count (exact)."""
        if other.num_bins != self.num_bins:
            raise UsageError("cannot merge histograms with different bin counts")
        r = max(self.range_max, other.range_max)
        o = other.copy()
        if r:
            self._grow(r)
            o._grow(r)
        self.hist += o.hist
        self.absmax = max(self.absmax, other.absmax)
        self.count += other.count

    def copy(self) -> "TensorHistogram":
        t = TensorHistogram(self.num_bins)
        t.hist = self.hist.copy()
        t.range_max, t.absmax, t.count = self.range_max, self.absmax, self.count
        return t


@dataclass
class Statistics:
    """Per-tensor histograms in graph order, plus where they came from."""

    tensors: dict[str, TensorHistogram]
    num_bins: int = 2048
    images: int = 0
    meta: dict = field(default_factory=dict)

    def absmax(self) -> dict[str, float]:
        return {k: v.absmax for k, v in self.tensors.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for the cache (names kept in order)."""
        names = list(self.tensors)
        return {
            "names": np.array(names, dtype=object).astype(str),
            "hist": np.stack([self.tensors[n].hist for n in names]) if names else np.zeros((0, self.num_bins), np.int64),
            "range_max": np.array([self.tensors[n].range_max for n in names], np.float64),
            "absmax": np.array([self.tensors[n].absmax for n in names], np.float64),
            "count": np.array([self.tensors[n].count for n in names], np.int64),
        }

    @classmethod
    def from_arrays(cls, arrs: dict[str, np.ndarray], images: int, meta: dict) -> "Statistics":
        hist = arrs["hist"]
        num_bins = int(hist.shape[1])
        tensors: dict[str, TensorHistogram] = {}
        for i, name in enumerate(arrs["names"].tolist()):
            t = TensorHistogram(num_bins)
            t.hist = hist[i].astype(np.int64)
            t.range_max = float(arrs["range_max"][i])
            t.absmax = float(arrs["absmax"][i])
            t.count = int(arrs["count"][i])
            tensors[str(name)] = t
        return cls(tensors=tensors, num_bins=num_bins, images=images, meta=meta)


@dataclass(frozen=True)
class CollectOptions:
    """How to run collection. ``tensors=None`` collects :func:`calibratable_tensors`."""

    num_bins: int = 2048
    tensors: tuple[str, ...] | None = None
    intra_op_threads: int | None = None


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx is not installed; pip install onnx") from None
    return onnx


def calibratable_tensors(model) -> list[str]:
    """Graph inputs and float outputs of non-constant nodes, in graph order (an onnx.ModelProto in)."""
    onnx = _import_onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    g = inferred.graph
    types: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    inits = {i.name for i in g.initializer}
    const = set(inits)
    names: list[str] = []
    for vi in g.input:
        if vi.name not in inits and types.get(vi.name) in _FLOAT_TYPES:
            names.append(vi.name)
    for node in g.node:
        # outputs of Constant nodes and of nodes fed only by constants are weights, not activations
        is_const = node.op_type == "Constant" or (len(node.input) > 0 and all((not i) or i in const for i in node.input))
        for o in node.output:
            if not o:
                continue
            if is_const:
                const.add(o)
            elif types.get(o) in _FLOAT_TYPES and o not in names:
                names.append(o)
    return names


QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "MaxPool", "AveragePool", "GlobalAveragePool", "Add")


def quantizable_inputs(model, op_types: Sequence[str] = QUANTIZABLE_OPS) -> list[str]:
    """The activations feeding ``op_types`` (a subset of :func:`calibratable_tensors`, graph order)."""
    acts = calibratable_tensors(model)
    fed = {i for n in model.graph.node if n.op_type in op_types for i in n.input if i}
    return [a for a in acts if a in fed]


def _session(onnx_path: str | os.PathLike, names: Sequence[str] | None, threads: int | None):
    onnx = _import_onnx()
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed; pip install onnxruntime") from None
    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:
        raise ArtifactError(f"cannot load ONNX model {onnx_path}: {e}; re-run `segdeploy export`") from None
    available = calibratable_tensors(model)
    if names is None:
        chosen = available
    else:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise UsageError(
                f"tensor(s) {', '.join(unknown[:5])} are not float activations of {onnx_path}; "
                f"choose among graph inputs and float node outputs"
            )
        chosen = list(names)
    if not chosen:
        raise DataError(f"model {onnx_path} has no float activation to calibrate")
    existing = {o.name for o in model.graph.output}
    for n in chosen:
        if n not in existing and n not in {i.name for i in model.graph.input}:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    tmp = None
    try:
        if model.ByteSize() < _PROTO_LIMIT:
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        else:  # > 2 GB: the temp copy needs external data; it lives as long as the session
            tmp = tempfile.TemporaryDirectory(prefix="segdeploy-calib-")
            path = os.path.join(tmp.name, "model.onnx")
            onnx.save(model, path, save_as_external_data=True, location="model.onnx.data")
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        if tmp is not None:
            tmp.cleanup()
        raise ArtifactError(f"ONNX Runtime cannot run {onnx_path} for calibration: {str(e).splitlines()[0]}") from None
    del model
    return sess, chosen, tmp


def collect_statistics(
    onnx_path: str | os.PathLike,
    batches: Iterable,
    options: CollectOptions = CollectOptions(),
    progress: Callable[[int], None] | None = None,
) -> Statistics:
    """Run the model over ``batches`` (Batch objects or NCHW float32 arrays) and histogram every tensor.

    ``progress(n)`` is called with the number of images done after each batch. Raises DataError on
    NaN/Inf (naming the tensor) or when no batch is given; ArtifactError when the model cannot run.
    """
    sess, names, tmp = _session(onnx_path, options.tensors, options.intra_op_threads)
    try:
        return _collect(sess, names, onnx_path, batches, options, progress)
    finally:
        del sess
        if tmp is not None:
            tmp.cleanup()


def _collect(sess, names, onnx_path, batches, options: CollectOptions, progress) -> Statistics:
    input_name = sess.get_inputs()[0].name
    if len(sess.get_inputs()) != 1:
        raise DataError(f"calibration supports single-input models; {onnx_path} has {len(sess.get_inputs())} inputs")
    hists = {n: TensorHistogram(options.num_bins) for n in names}
    fetch = [n for n in names if n != input_name]
    images = 0
    for b in batches:
        arr = b.array if hasattr(b, "array") else np.asarray(b, dtype=np.float32)
        files = getattr(b, "files", ())
        try:
            outs = sess.run(fetch, {input_name: arr})
        except Exception as e:
            raise DataError(
                f"ONNX Runtime failed on a calibration batch of shape {tuple(arr.shape)}: "
                f"{str(e).splitlines()[0]}; check the images against the model's input profile"
            ) from None
        values = dict(zip(fetch, outs))
        if input_name in hists:
            values[input_name] = arr
        for n in names:
            v = values[n]
            try:
                hists[n].update(v)
            except NonFiniteError as e:
                where = f" (images: {', '.join(os.path.basename(f) for f in files[:4])})" if files else ""
                raise DataError(
                    f"{e.args[0]} in tensor {n!r} during calibration{where}; the FP32 model overflows or the "
                    "preprocessing is wrong for it -- fix the model or the calibration data"
                ) from None
        images += int(arr.shape[0])
        del outs, values
        if progress:
            progress(images)
    if images == 0:
        raise DataError("the calibration set produced no batch; pass at least one image")
    return Statistics(tensors=hists, num_bins=options.num_bins, images=images)
