"""Instance parity runs: compare two models over a dataset, the report document, the terminal summary."""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np

from segdeploy.errors import DataError
from segdeploy.parity.instances.adapters import (
    InstanceModel,
    OnnxInstanceModel,
    RunnerInstanceModel,
    TorchInstanceModel,
    _as_chw01,
)
from segdeploy.parity.instances.gate import InstanceGate, evaluate_instance_gate
from segdeploy.parity.instances.matching import InstanceAccumulator
from segdeploy.parity.instances.model import (
    InstanceOptions,
    Instances,
    instances_from_outputs,
    instances_to_class_map,
)


def compare_instances(
    reference: InstanceModel,
    candidate: InstanceModel,
    samples: Iterable[Any],
    options: InstanceOptions = InstanceOptions(),
    *,
    gate: InstanceGate | None = None,
    class_names: Sequence[str] = (),
    command: str | None = None,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Run ``reference`` and ``candidate`` on every sample and return the instance parity report dict.

    ``samples`` yields objects with ``.stem`` and ``.image`` (HxWx3 uint8 RGB) and optionally ``.path``,
    such as :class:`segdeploy.datasets.Sample`, or ``(stem, image)`` tuples.

    The result is :meth:`InstanceAccumulator.summary` (JSON-ready) plus ``reference`` / ``candidate``
    (the models' ``describe()`` when they have one), ``classes`` ({"names": [...]}), ``command``,
    ``versions``, ``created_by`` and ``gate`` (:func:`evaluate_instance_gate`; not evaluated without
    ``gate``). Each worst image carries ``image`` (its path or None), ``height``/``width`` and
    ``reference_png`` / ``candidate_png``: base64 palette PNGs of the instances painted by class
    (:func:`instances_to_class_map`), the same encoding as the semantic report's, so
    :mod:`segdeploy.parity.html_report` renders both. With ``keep_predictions`` the worst images'
    thresholded :class:`Instances` are attached under the non-JSON key ``"_predictions"``
    (``{stem: (image, ref, cand)}``); pop it before serialising.

    Does not raise when the gate trips (call :func:`raise_for_instance_gate` on ``report["gate"]``).
    Raises DataError on an empty sample stream or malformed outputs, VerificationError on NaN/Inf.
    """
    acc = InstanceAccumulator(options)
    worst = _WorstImages(keep_predictions)
    for item in samples:
        stem, image = (item.stem, item.image) if hasattr(item, "image") else item
        stem = str(stem)
        chw = _as_chw01(image)
        size = (int(chw.shape[1]), int(chw.shape[2]))
        r = instances_from_outputs(**reference(chw), options=options, image_size=size, source="reference")
        c = instances_from_outputs(**candidate(chw), options=options, image_size=size, source="candidate")
        acc.update(stem, r, c)
        worst.keep(item, stem, image, size, r, c, {im["stem"] for im in acc.images})
    if acc.num_images == 0:
        raise DataError("no images to compare; check the --data directory")
    report = acc.summary()
    worst.fill(report["worst_images"])
    from segdeploy.parity.report_json import created_by, versions

    report.update(
        reference=_describe(reference, "reference"),
        candidate=_describe(candidate, "candidate"),
        classes={"names": [str(n) for n in class_names]},
        command=command,
        versions=versions(),
        created_by=created_by(),
        gate=evaluate_instance_gate(report, gate or InstanceGate()),
    )
    if keep_predictions:
        report["_predictions"] = worst.kept
    return report


class _WorstImages:
    """The class maps (and, when asked, the predictions) of the images currently among the worst."""

    def __init__(self, keep_predictions: bool):
        self.keep_predictions = keep_predictions
        self.maps: dict[str, tuple[str | None, np.ndarray, np.ndarray]] = {}
        self.kept: dict[str, tuple[np.ndarray, Instances, Instances]] = {}

    def keep(self, item: Any, stem: str, image: Any, size: tuple[int, int], r: Instances, c: Instances,
             worst: set[str]) -> None:
        if stem in worst:
            self.maps[stem] = (getattr(item, "path", None), instances_to_class_map(r, size),
                               instances_to_class_map(c, size))
            if self.keep_predictions:
                self.kept[stem] = (np.asarray(image), r, c)
        self.maps = {k: v for k, v in self.maps.items() if k in worst}
        self.kept = {k: v for k, v in self.kept.items() if k in worst}

    def fill(self, records: list[dict[str, Any]]) -> None:
        """Add each worst record's image path, size and class-map PNGs (the one encoding, parity.palette_png)."""
        from segdeploy.parity.palette_png import encode_class_map

        for im in records:
            path, rmap, cmap = self.maps[im["stem"]]
            im.update(image=None if path is None else str(path), height=int(rmap.shape[0]), width=int(rmap.shape[1]),
                      reference_png=encode_class_map(rmap), candidate_png=encode_class_map(cmap))


def _describe(model: Any, side: str) -> dict[str, Any]:
    d = getattr(model, "describe", None)
    if callable(d):
        return dict(d())
    return {"kind": "callable", "name": getattr(model, "__name__", type(model).__name__)}


def run_instance_check(
    reference: Any,
    candidate: Any,
    data: Any,
    *,
    masks: Any = None,
    list_file: str | os.PathLike | None = None,
    layout: str | None = None,
    weights: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    device: str = "cpu",
    providers: Sequence[str] = ("CPUExecutionProvider",),
    candidate_options: Any = None,
    options: InstanceOptions = InstanceOptions(),
    gate: InstanceGate | None = None,
    class_names: Sequence[str] = (),
    command: str | None = None,
) -> dict[str, Any]:
    """What ``segdeploy check --task instance`` runs: load, compare, gate (not raised).

    ``reference``: an ``nn.Module`` or anything :func:`segdeploy.load.load_model` loads (``.pt2``,
    TorchScript, ``pkg.module:factory`` (+ ``weights``), a pickle with ``trust_pickle``); the module is
    used *raw* (no semantic output selection) and must return torchvision-style detection dicts.
    ``candidate``: a deployed artifact (``.onnx`` on ONNX Runtime with ``providers``; an engine on the TensorRT
    runner) or any :class:`~segdeploy.runners.base.Runner`; it runs through the runner interface
    (``infer_outputs``). ``candidate_options``: that runner's options. ``data``: an image folder or a
    :class:`~segdeploy.datasets.Dataset` (masks are not needed: the reference is the ground truth).
    Returns the report dict of :func:`compare_instances`; raise with :func:`raise_for_instance_gate`.
    """
    from segdeploy.datasets import Dataset, open_dataset

    if isinstance(reference, (str, os.PathLike)) or weights is not None:
        from segdeploy.load import load_model

        lm = load_model(reference, weights=weights, trust_pickle=trust_pickle)
        module, name = lm.raw, os.path.basename(str(lm.source))
    else:
        module, name = reference, type(reference).__name__
    if device != "cpu":
        module = module.to(device)
    if hasattr(module, "eval"):
        module.eval()
    ds = data if isinstance(data, Dataset) else open_dataset(data, masks, list_file=list_file, layout=layout)
    from segdeploy.runners import Runner, open_runner

    if isinstance(candidate, Runner):
        cand = RunnerInstanceModel(candidate)
    elif candidate_options is None and str(candidate).endswith(".onnx"):
        cand = OnnxInstanceModel(candidate, providers=providers)
    else:
        cand = RunnerInstanceModel(open_runner(candidate, options=candidate_options))
    try:
        return compare_instances(TorchInstanceModel(module, device=device, name=name), cand, ds, options, gate=gate,
                                 class_names=class_names, command=command)
    finally:
        cand.close()


def format_instance_report(report: dict[str, Any]) -> str:
    """Terminal summary of an instance report: totals, per-class rows, worst images, gate verdict."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100.0 * v:.2f}"

    t = report["totals"]
    sd = t["score_drift"]
    lines = [
        f"instance parity: {report['num_images']} images, match IoU >= {report['options']['iou_threshold']:g}",
        f"  reference: {report.get('reference', {}).get('name')}   candidate: {report.get('candidate', {}).get('name')}",
        f"  instances: reference {t['reference']}, candidate {t['candidate']}, matched {t['matched']} "
        f"(missed {t['missed']}, extra {t['extra']})",
        f"  recall {pct(t['recall'])} %  precision {pct(t['precision'])} %  matched mask IoU {pct(t['matched_mask_iou'])} %"
        f"  box IoU {pct(t['box_iou'])} %  score drift mean {sd['mean'] if sd['mean'] is None else format(sd['mean'], '.2e')}",
        "",
        f"  {'class':>6}  {'ref':>5}  {'cand':>5}  {'match':>5}  {'recall %':>8}  {'prec. %':>8}  {'mask IoU %':>10}",
    ]
    names = (report.get("classes") or {}).get("names") or []
    for k, c in report["per_class"].items():
        i = int(k)
        label = names[i] if i < len(names) and names[i] else k
        lines.append(f"  {label:>6}  {c['reference']:>5}  {c['candidate']:>5}  {c['matched']:>5}  {pct(c['recall']):>8}  "
                     f"{pct(c['precision']):>8}  {pct(c['matched_mask_iou']):>10}")
    if report["worst_images"]:
        lines += ["", "  worst images (F1 of the matching, mean mask IoU):"]
        lines += [f"    {w['stem']}: F1 {pct(w['f1'])} %, IoU {pct(w['mean_mask_iou'])} % "
                  f"({w['matched']} matched of {w['reference']} ref / {w['candidate']} cand)" for w in report["worst_images"]]
    g = report.get("gate") or {}
    lines.append("")
    if not g.get("evaluated"):
        lines.append("gate: not evaluated (no threshold given)")
    elif g.get("passed"):
        lines.append("gate: PASS")
    else:
        lines.append("gate: FAIL -- " + "; ".join(g.get("failures") or []))
    return "\n".join(lines)
