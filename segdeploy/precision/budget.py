"""Accuracy budget for INT8: per-layer sensitivity, then greedy fallback of the worst layers to float.

Contract
--------
``search_budget(fp32_model, amax, evaluator, max_drop, qdq_options) -> BudgetResult``

1. Quantize every quantizable layer and measure the mIoU drop (points) on the evaluator's subset at
   ORT_DISABLE_ALL (faithful Q/DQ emulation). Within ``max_drop``: done, nothing kept out.
2. Sensitivity of each quantized layer, by ``mode``:
   ``"all_but_one"`` -- quantize all layers but this one; its sensitivity is the drop it removes;
   ``"only_one"`` -- quantize only this layer; its sensitivity is the drop it causes alone;
   ``"both"`` -- rank by the sum. Ties (common on small subsets, where mIoU moves in steps) are broken by
   the pixel disagreement with the reference, which is finer-grained.
3. Greedily keep the most sensitive layer in float (it runs in TensorRT's non-quantized precision),
   re-measure, and repeat until the drop is within ``max_drop`` or ``max_fallback`` layers are out.

Each kept-out layer is reported with its sensitivity, the drop after it was kept out, its weight count and
its share of the quantized layers' multiply-accumulates at the evaluator's first input shape (the runtime
cost of keeping it out). When the budget cannot be met, :class:`~segdeploy.errors.GateError` (exit 3)
says the best drop reached and with which layers.
Costs ~N+k model evaluations on the subset (N quantized layers, k kept out; 2N for "both").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import numpy as np

from segdeploy.errors import GateError, UsageError
from segdeploy.precision.qdq import QdqOptions, quantize_qdq
from segdeploy.progress import Progress, as_progress
from segdeploy.vocab import GATED_ORT_LEVEL

MODES = ("all_but_one", "only_one", "both")


class BudgetNotMet(GateError):
    """The budget search could not reach ``max_drop`` (exit 3). ``best_drop`` and ``kept_out`` say how close it got."""

    def __init__(self, message: str, best_drop: float, kept_out: list, initial_drop: float):
        super().__init__(message, kept_out=kept_out)
        self.best_drop = best_drop
        self.initial_drop = initial_drop


@dataclass(frozen=True)
class LayerCost:
    name: str
    op_type: str
    sensitivity: float  # mIoU points (see mode)
    disagreement: float  # pixel disagreement change used as tie-break (fraction)
    drop_after: float | None = None  # measured drop once this layer (and the ones before) were kept out
    weights: int = 0
    mac_share: float | None = None

    def to_dict(self) -> dict:
        return {
            "layer": self.name,
            "op": self.op_type,
            "sensitivity_points": round(self.sensitivity, 4),
            "disagreement_delta": round(self.disagreement, 6),
            "drop_after_points": None if self.drop_after is None else round(self.drop_after, 4),
            "weights": self.weights,
            "mac_share": None if self.mac_share is None else round(self.mac_share, 4),
        }


@dataclass
class BudgetResult:
    model: object  # the chosen Q/DQ onnx.ModelProto
    excluded: list[LayerCost]
    drop: float  # on the subset, at ORT_DISABLE_ALL
    initial_drop: float
    budget: float
    evaluations: int
    subset_images: int
    sensitivities: list[LayerCost] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "budget_points": self.budget,
            "initial_drop_points": round(self.initial_drop, 4),
            "final_drop_points": round(self.drop, 4),
            "subset_images": self.subset_images,
            "evaluations": self.evaluations,
            "kept_out": [c.to_dict() for c in self.excluded],
            "most_sensitive": [c.to_dict() for c in self.sensitivities[:10]],
        }


def _layer_costs(model) -> dict[str, tuple[int, int]]:
    """node name -> (weight count, MACs at the graph's first input shape if inferable, else 0)."""
    import onnx

    inits = {t.name: t for t in model.graph.initializer}
    shapes: dict[str, list[int]] = {}
    try:
        inf = onnx.shape_inference.infer_shapes(model)
        for vi in list(inf.graph.value_info) + list(inf.graph.output):
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
            shapes[vi.name] = dims
    except Exception:  # noqa: BLE001 - costs are informative only
        pass
    out: dict[str, tuple[int, int]] = {}
    for n in model.graph.node:
        if len(n.input) > 1 and n.input[1] in inits:
            w = inits[n.input[1]]
            count = int(np.prod(w.dims)) if w.dims else 1
            o = shapes.get(n.output[0], [])
            spatial = int(np.prod(o[2:])) if len(o) > 2 and all(o[2:]) else 0
            macs = count * spatial if n.op_type in ("Conv", "ConvTranspose") else count
            out[n.name] = (count, macs)
    return out


def _fixed_input_copy(model, shape):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, d in enumerate(m.graph.input[0].type.tensor_type.shape.dim):
        d.Clear()
        d.dim_value = int(shape[i])
    return m


class _Search:
    """Q/DQ models of ``fp32`` with some layers kept in float, and their measured drop on the evaluator's subset."""

    def __init__(self, fp32_model, amax: Mapping[str, float], evaluator, options: QdqOptions):
        self.fp32 = fp32_model
        self.amax = amax
        self.evaluator = evaluator
        self.options = options
        self.ops = {n.name: n.op_type for n in fp32_model.graph.node}

    def build(self, exclude: tuple[str, ...]):
        """The Q/DQ model with ``exclude`` (and the options' own exclusions) in float. UsageError: nothing left."""
        return quantize_qdq(self.fp32, self.amax, replace(self.options, exclude=tuple(self.options.exclude) + exclude))

    def measure(self, model) -> tuple[float, float]:
        """(mIoU drop in points, pixel disagreement with the reference) at ORT_DISABLE_ALL."""
        s = self.evaluator.score_model(model, GATED_ORT_LEVEL)
        return (s.drop if s.drop is not None else 0.0), 1.0 - s.agreement

    def costs(self, layers: list[str], sens: dict[str, tuple[float, float]]) -> Callable[..., LayerCost]:
        """A :class:`LayerCost` maker: sensitivity, weights and MAC share at the evaluator's first input shape."""
        try:
            table = _layer_costs(_fixed_input_copy(self.fp32, self.evaluator.batches[0].array.shape))
        except Exception:  # noqa: BLE001 - costs are informative only
            table = {}
        total_macs = sum(table.get(n, (0, 0))[1] for n in layers) or None

        def cost_of(name: str, drop_after: float | None = None) -> LayerCost:
            w, macs = table.get(name, (0, 0))
            return LayerCost(name, self.ops.get(name, "?"), sens[name][0], sens[name][1], drop_after, w,
                             (macs / total_macs) if total_macs else None)

        return cost_of


def _sensitivities(search: _Search, layers: list[str], mode: str, d0: float, dis0: float,
                   progress: Progress) -> dict[str, tuple[float, float]]:
    """Per layer: (sensitivity in points, disagreement change) by ``mode`` (see the module docstring)."""
    sens: dict[str, tuple[float, float]] = {name: (0.0, 0.0) for name in layers}
    with progress.task("budget: sensitivity", total=len(layers), unit="layer") as task:
        for name in layers:
            if mode in ("all_but_one", "both"):
                d, dis = search.measure(search.build((name,)).model)
                a, b = sens[name]
                sens[name] = (a + (d0 - d), b + (dis0 - dis))
            if mode in ("only_one", "both"):
                try:
                    d, dis = search.measure(search.build(tuple(x for x in layers if x != name)).model)
                except UsageError:
                    d, dis = 0.0, 0.0
                a, b = sens[name]
                sens[name] = (a + d, b + dis)
            task.advance()
    return sens


def _fall_back(search: _Search, layers: list[str], sens: dict[str, tuple[float, float]], d0: float, max_drop: float,
               max_fallback: int | None, start: int, progress: Progress) -> BudgetResult:
    """Keep the most sensitive layers in float, one at a time, until the drop is within ``max_drop``."""
    ranked = sorted(layers, key=lambda n: (sens[n][0], sens[n][1]), reverse=True)
    cost_of = search.costs(layers, sens)
    ev = search.evaluator
    limit = len(ranked) if max_fallback is None else min(max_fallback, len(ranked))
    excluded: list[LayerCost] = []
    best: tuple[float, list[LayerCost]] = (d0, [])
    drop = d0
    for name in ranked[:limit]:
        try:
            cand = search.build(tuple(c.name for c in excluded) + (name,))
        except UsageError:  # nothing left to quantize
            break
        drop, _ = search.measure(cand.model)
        excluded.append(cost_of(name, drop))
        progress.step(f"budget: kept {name} in float -> drop {drop:.3f} points")
        if drop < best[0]:
            best = (drop, list(excluded))
        if drop <= max_drop:
            return BudgetResult(cand.model, excluded, drop, d0, max_drop, ev.evaluations - start, ev.images,
                                [cost_of(n) for n in ranked])
    names = ", ".join(c.name for c in best[1][:5]) or "none"
    tried = f"; keeping up to {len(excluded)} of {len(layers)} layers in float did not get below {drop:.2f}" \
        if len(excluded) > len(best[1]) else ""
    raise BudgetNotMet(
        f"INT8 cannot meet --max-miou-drop {max_drop}: best drop {best[0]:.2f} points on {ev.images} validation "
        f"images with {len(best[1])} layer(s) kept in float ({names}{', ...' if len(best[1]) > 5 else ''}){tried}; "
        "raise the budget, add calibration images, try another --calib-method, or use --fp16",
        best[0],
        best[1],
        d0,
    )


def search_budget(
    fp32_model,
    amax: Mapping[str, float],
    evaluator,
    max_drop: float,
    qdq_options: QdqOptions | None = None,
    *,
    mode: str = "all_but_one",
    max_fallback: int | None = None,
    progress: Progress | None = None,
) -> BudgetResult:
    """Find a Q/DQ model within ``max_drop`` mIoU points (see module docstring). Raises GateError/UsageError.
    ``progress``: step lines, and the sensitivity measurements as a counted task (``budget: sensitivity``)."""
    if mode not in MODES:
        raise UsageError(f"unknown sensitivity mode {mode!r}; use one of {', '.join(MODES)}")
    if not (max_drop >= 0):
        raise UsageError(f"--max-miou-drop must be >= 0 points, got {max_drop}")
    progress = as_progress(progress)
    search = _Search(fp32_model, amax, evaluator, qdq_options or QdqOptions())
    start = evaluator.evaluations
    full = search.build(())
    progress.step(f"budget: scoring all {len(full.quantized)} layers in INT8 on {evaluator.images} images")
    d0, dis0 = search.measure(full.model)
    progress.step(f"budget: all {len(full.quantized)} layers INT8 -> drop {d0:.3f} points (budget {max_drop})")
    if d0 <= max_drop:
        return BudgetResult(full.model, [], d0, d0, max_drop, evaluator.evaluations - start, evaluator.images)
    layers = list(full.quantized)
    sens = _sensitivities(search, layers, mode, d0, dis0, progress)
    return _fall_back(search, layers, sens, d0, max_drop, max_fallback, start, progress)
