"""Streaming statistics collection with ONNX Runtime on the FP32 ONNX.

Contract
--------
:func:`collect_statistics` makes an in-memory copy of the model with in-graph probes (probes.py) on the chosen
tensors (default :func:`calibratable_tensors`: every graph input and every float node output that is not a
constant), runs it batch by batch on the CPU and folds each tensor into its statistic (tensors that only copy
other calibrated tensors' values -- Concat, Reshape, ... -- get the exact merge of those, see probes.py):

* ``CollectOptions(histograms=False)``: a :class:`TensorRange` per tensor (exact max |x| and count) -- ONNX
  Runtime reduces each activation right after producing it; only scalars leave the session, so no batch's
  activations are ever materialised together and the cost is close to the forward pass;
* ``histograms=True`` (default): a :class:`TensorHistogram` per tensor (it also holds the max): the session
  also outputs the activations, which a :class:`~segdeploy.calibration.histogram.Binner` bins on
  ``workers`` threads while ONNX Runtime runs the next batch (and the next batch is read while a batch runs):
  at most two batches of activations are alive.

Memory does not grow with the number of images. A NaN or Inf in any collected tensor raises
:class:`~segdeploy.errors.DataError` naming the tensor and the batch's files. The activations are those of
ORT_ENABLE_BASIC (the optimisation level has been the same since the first release, so ranges do not move).
"""

from __future__ import annotations

import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from segdeploy.calibration.histogram import Binner, NonFiniteError, TensorHistogram, TensorRange, default_workers
from segdeploy.calibration.probes import ProbePlan, add_probes
from segdeploy.errors import ArtifactError, DataError, MissingDependencyError, UsageError
from segdeploy.vocab import MODEL_ONNX, QUANTIZABLE_OPS  # the Q/DQ placer's op set (segdeploy.precision.qdq)

__all__ = ["CollectOptions", "NonFiniteError", "Statistics", "TensorHistogram", "TensorRange", "QUANTIZABLE_OPS",
           "calibratable_tensors", "collect_statistics", "quantizable_inputs"]

_PROTO_LIMIT = 2**31 - 1  # protobuf's serialisation limit
_FLOAT_TYPES = {1, 10, 11, 16}  # onnx TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass
class Statistics:
    """Per-tensor statistics in graph order (all :class:`TensorHistogram` or all :class:`TensorRange`)."""

    tensors: dict[str, TensorRange]
    num_bins: int = 2048
    images: int = 0
    meta: dict = field(default_factory=dict)
    histograms: bool = True

    @property
    def statistic(self) -> str:
        """What was collected: TensorHistogram.statistic (serves every method) or TensorRange.statistic (max)."""
        return TensorHistogram.statistic if self.histograms else TensorRange.statistic

    def absmax(self) -> dict[str, float]:
        return {k: v.absmax for k, v in self.tensors.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for the cache (names kept in order; ``hist``/``range_max`` only with histograms)."""
        names = list(self.tensors)
        arrs = {
            "names": np.array(names, dtype=object).astype(str),
            "absmax": np.array([self.tensors[n].absmax for n in names], np.float64),
            "count": np.array([self.tensors[n].count for n in names], np.int64),
        }
        if self.histograms:
            arrs["hist"] = (np.stack([self.tensors[n].hist for n in names]) if names
                            else np.zeros((0, self.num_bins), np.int64))
            arrs["range_max"] = np.array([self.tensors[n].range_max for n in names], np.float64)
        return arrs

    @classmethod
    def from_arrays(cls, arrs: dict[str, np.ndarray], images: int, meta: dict) -> "Statistics":
        histograms = "hist" in arrs
        num_bins = int(arrs["hist"].shape[1]) if histograms else int(meta.get("num_bins", 2048))
        tensors: dict[str, TensorRange] = {}
        for i, name in enumerate(arrs["names"].tolist()):
            t = TensorHistogram(num_bins) if histograms else TensorRange()
            if histograms:
                t.hist = arrs["hist"][i].astype(np.int64)
                t.range_max = float(arrs["range_max"][i])
            t.absmax = float(arrs["absmax"][i])
            t.count = int(arrs["count"][i])
            tensors[str(name)] = t
        return cls(tensors=tensors, num_bins=num_bins, images=images, meta=meta, histograms=histograms)


@dataclass(frozen=True)
class CollectOptions:
    """How to run collection. ``tensors=None`` collects :func:`calibratable_tensors`; ``histograms=False``
    collects only the max |x| (enough for the max method); ``workers``: binning threads (None: the CPUs this
    process may use, or ``intra_op_threads`` when set); ``run_bytes``: with histograms, each batch is run in chunks
    whose observed activations take at most this many bytes (at least one image; measured on the first image),
    so memory does not grow with the image size times the batch."""

    num_bins: int = 2048
    tensors: tuple[str, ...] | None = None
    intra_op_threads: int | None = None
    histograms: bool = True
    workers: int | None = None
    run_bytes: int = 512 << 20  # histogram runs: observed activations of one run at most this (batches are split)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx is not installed; pip install onnx") from None
    return onnx


_SMALL_INITIALIZER = 64  # elements: shape/size/axes constants that shape inference reads as data, kept


def _weightless(model):
    """The model's graph with every large initializer declared as a graph input instead (no tensor data): type
    inference needs only the weights' types and shapes, and copying a large model's weights into the
    shape-inference call costs more than the inference (0.4 s for a 100 MB model). Small initializers (at most
    64 elements: the constants a ``Resize``'s ``sizes`` or a ``Reshape``'s shape are computed from) keep their
    data, since without it inference of those ops fails and every tensor after them loses its type."""
    from onnx import helper

    g = model.graph
    declared = {i.name for i in g.input}
    small = [t for t in g.initializer if t.name not in declared and math.prod(t.dims) <= _SMALL_INITIALIZER]
    kept = {t.name for t in small}
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer
               if t.name not in declared and t.name not in kept]
    light = helper.make_graph(list(g.node), g.name, list(g.input) + weights, list(g.output), small,
                              value_info=list(g.value_info))
    out = helper.make_model(light, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    out.functions.extend(model.functions)
    return out


def _float_activations(model) -> dict[str, int]:
    """Graph inputs and float outputs of non-constant nodes -> ONNX element type, in graph order."""
    onnx = _import_onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(_weightless(model))
    except Exception:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:
            inferred = model
    types: dict[str, int] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    g = model.graph
    inits = {i.name for i in g.initializer}
    const = set(inits)
    found: dict[str, int] = {}
    for vi in g.input:
        if vi.name not in inits and types.get(vi.name) in _FLOAT_TYPES:
            found[vi.name] = types[vi.name]
    for node in g.node:
        # outputs of Constant nodes and of nodes fed only by constants are weights, not activations
        is_const = node.op_type == "Constant" or (len(node.input) > 0 and all((not i) or i in const for i in node.input))
        for o in node.output:
            if not o:
                continue
            if is_const:
                const.add(o)
            elif types.get(o) in _FLOAT_TYPES and o not in found:
                found[o] = types[o]
    return found


def calibratable_tensors(model) -> list[str]:
    """Graph inputs and float outputs of non-constant nodes, in graph order (an onnx.ModelProto in)."""
    return list(_float_activations(model))


def quantizable_inputs(model, op_types: Sequence[str] = QUANTIZABLE_OPS) -> list[str]:
    """The activations feeding ``op_types`` (a subset of :func:`calibratable_tensors`, graph order)."""
    acts = calibratable_tensors(model)
    fed = {i for n in model.graph.node if n.op_type in op_types for i in n.input if i}
    return [a for a in acts if a in fed]


def _choose(onnx_path, model, names: Sequence[str] | None) -> tuple[list[str], dict[str, int]]:
    available = _float_activations(model)
    if names is None:
        chosen = list(available)
    else:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise UsageError(
                f"tensor(s) {', '.join(unknown[:5])} are not float activations of {onnx_path}; "
                f"choose among graph inputs and float node outputs"
            )
        chosen = list(dict.fromkeys(names))
    if not chosen:
        raise DataError(f"model {onnx_path} has no float activation to calibrate")
    return chosen, available


def _session_options(ort, threads: int | None):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    order = getattr(getattr(ort, "ExecutionOrder", None), "PRIORITY_BASED", None)
    if order is not None:  # run each probe right after its producer, so activations are freed as usual
        so.execution_order = order
    # our own threads (the next batch's reader, the binning workers) share the CPUs with ORT's pool: idle ORT
    # workers must sleep rather than spin on them (measured: spinning cost 17-20 % on a busy 2-CPU machine)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


def _session(onnx_path: str | os.PathLike, names: Sequence[str] | None, threads: int | None, keep: bool):
    """(session, ProbePlan, temp dir or None) for the probed copy of the model."""
    onnx = _import_onnx()
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed; pip install onnxruntime") from None
    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:
        raise ArtifactError(f"cannot load ONNX model {onnx_path}: {e}; re-run `segdeploy export`") from None
    chosen, types = _choose(onnx_path, model, names)
    plan = add_probes(model, chosen, types, keep)
    so = _session_options(ort, threads)
    tmp = None
    try:
        if model.ByteSize() < _PROTO_LIMIT:
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        else:  # > 2 GB: the temp copy needs external data; it lives as long as the session
            tmp = tempfile.TemporaryDirectory(prefix="segdeploy-calib-")
            path = os.path.join(tmp.name, MODEL_ONNX)  # a private temp copy, not an artifact
            onnx.save(model, path, save_as_external_data=True, location=f"{MODEL_ONNX}.data")
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        if tmp is not None:
            tmp.cleanup()
        raise ArtifactError(f"ONNX Runtime cannot run {onnx_path} for calibration: {str(e).splitlines()[0]}") from None
    del model
    return sess, plan, tmp


def collect_statistics(
    onnx_path: str | os.PathLike,
    batches: Iterable,
    options: CollectOptions = CollectOptions(),
    progress: Callable[[int], None] | None = None,
) -> Statistics:
    """Stream ``batches`` (``Batch`` objects or float32 NCHW arrays) through the model; statistics of every
    chosen tensor (a histogram each, or only the max with ``options.histograms=False``).

    ``progress(n)`` is called with the number of images done after each batch. Raises DataError on
    NaN/Inf (naming the tensor) or when no batch is given; ArtifactError when the model cannot run.
    """
    sess, plan, tmp = _session(onnx_path, options.tensors, options.intra_op_threads, options.histograms)
    try:
        if len(sess.get_inputs()) != 1:
            raise DataError(f"calibration supports single-input models; {onnx_path} has {len(sess.get_inputs())} inputs")
        return _collect(sess, plan, batches, options, progress)
    finally:
        del sess
        if tmp is not None:
            tmp.cleanup()


def _run(sess, input_name: str, plan: ProbePlan, arr: np.ndarray) -> list:
    try:
        return sess.run(plan.outputs, {input_name: arr})
    except Exception as e:
        raise DataError(
            f"ONNX Runtime failed on a calibration batch of shape {tuple(arr.shape)}: "
            f"{str(e).splitlines()[0]}; check the images against the model's input profile"
        ) from None


def _refuse_nonfinite(probes, files) -> None:
    for name, p in probes:
        if p.nonfinite:
            where = f" (images: {', '.join(os.path.basename(f) for f in files[:4])})" if files else ""
            raise DataError(
                f"{p.nonfinite} in tensor {name!r} during calibration{where}; the FP32 model overflows or the "
                "preprocessing is wrong for it -- fix the model or the calibration data"
            )


def _derive(stats: dict[str, TensorRange], derived) -> None:
    """Statistics of the derived tensors: the exact merge of their sources' (graph order: chains resolve)."""
    for name, sources in derived.items():
        stat = stats[sources[0]].copy()
        for src in sources[1:]:
            stat.merge(stats[src])
        stats[name] = stat


def _runs_ahead(sess, input_name: str, plan: ProbePlan, batches) -> Iterator[tuple[object, np.ndarray, list]]:
    """(batch, input array, outputs) per batch; the next batch is read and its run started (ONNX Runtime
    releases the GIL) before the current one is handed over, so reading and the caller's binning overlap the
    forward pass. One run at a time: at most two batches' outputs are alive."""
    with ThreadPoolExecutor(1, thread_name_prefix="segdeploy-calib-run") as pool:
        pending = None
        try:
            for b in batches:
                arr = b.array if hasattr(b, "array") else np.asarray(b, dtype=np.float32)
                started = (b, arr, pool.submit(_run, sess, input_name, plan, arr))
                if pending is not None:
                    yield pending[0], pending[1], pending[2].result()
                pending = started
            if pending is not None:
                yield pending[0], pending[1], pending[2].result()
        finally:
            if pending is not None:
                pending[2].cancel()


@dataclass(frozen=True)
class _Chunk:
    array: np.ndarray
    files: tuple = ()


class _ChunkSizer:
    """Splits batches into chunks whose run's outputs stay under ``budget`` bytes: until one image's outputs are
    measured (:meth:`measured`) a chunk is one image; then as many images as fit, at least one. The statistics
    do not depend on the batching (every tensor's statistic is a merge over images)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.per_image: int | None = None

    def chunks(self, batches) -> Iterator[_Chunk]:
        for b in batches:
            arr = b.array if hasattr(b, "array") else np.asarray(b, dtype=np.float32)
            files = tuple(getattr(b, "files", ()))
            i = 0
            while i < arr.shape[0]:
                k = 1 if self.per_image is None else max(1, self.budget // max(self.per_image, 1))
                yield _Chunk(arr[i:i + k], files[i:i + k] if files else ())
                i += k

    def measured(self, outputs: list, images: int) -> None:
        if self.per_image is None and images:
            self.per_image = sum(getattr(o, "nbytes", 0) for o in outputs) // images


def _collect(sess, plan: ProbePlan, batches, options: CollectOptions, progress) -> Statistics:
    input_name = sess.get_inputs()[0].name
    keep = options.histograms
    sizer = _ChunkSizer(options.run_bytes) if keep else None
    if sizer is not None:
        batches = sizer.chunks(batches)
    stats: dict[str, TensorRange] = {n: TensorHistogram(options.num_bins) if keep else TensorRange()
                                     for n in plan.probed}
    workers = options.workers or options.intra_op_threads or default_workers()
    images = 0
    with Binner(workers if keep else 1) as binner:
        for b, arr, outputs in _runs_ahead(sess, input_name, plan, batches):
            if sizer is not None:
                sizer.measured(outputs, int(arr.shape[0]))
            probes = plan.read(outputs, {input_name: arr}, keep)
            del outputs
            _refuse_nonfinite(probes, getattr(b, "files", ()))
            for name, p in probes:
                stat = stats[name]
                stat.observe(p.absmax, p.count)
                if p.values is not None:
                    binner.add(stat, p.values)
            del probes
            binner.finish()  # while the next batch runs; before it observes (its range may grow)
            images += int(arr.shape[0])
            if progress:
                progress(images)
    if images == 0:
        raise DataError("the calibration set produced no batch; pass at least one image")
    _derive(stats, plan.derived)
    return Statistics(tensors={n: stats[n] for n in plan.tensors}, num_bins=options.num_bins, images=images,
                      histograms=keep)
