"""Instance-segmentation parity (package: model, matching, gate, adapters, report): a deployed Mask R-CNN-style model against its PyTorch reference.

Semantic parity compares class maps pixel by pixel; instance models output a *set* of detections per image
(``boxes [N,4]``, ``labels [N]``, ``scores [N]``, ``masks [N,1,H,W]`` probabilities, torchvision's
convention), whose order and count may differ between backends. This module matches the two sets and
reports how far the candidate drifted from the reference.

Matching (per image, per class, greedy by candidate score, COCO-style)
----------------------------------------------------------------------
Masks are binarised at ``mask_threshold`` (0.5, as torchvision's ``paste_masks`` users do). Detections
below ``score_threshold`` are dropped on both sides. Candidates are visited in descending score order
(ties: lower index first); each takes the still-unmatched reference instance *of the same label* with the
highest mask IoU, if that IoU is >= ``iou_threshold`` (default 0.5). A pair therefore always agrees on
the label and overlaps by at least the threshold. Two *empty* masks (all probabilities below the mask
threshold, common for tiny boxes) are compared by their box IoU instead, so identical empty detections match.
Note that tiny masks (a few pixels) amplify numerical noise: one flipped pixel of a 3-pixel mask is IoU 0.67.

Metrics (all over the whole dataset; per class too)
---------------------------------------------------
* ``matched_mask_iou``: mean mask IoU of the matched pairs (``None`` when nothing matched),
* ``recall``: matched / reference instances (the share of reference instances the candidate reproduced),
* ``precision``: matched / candidate instances,
* ``score_drift``: mean and max ``|score_ref - score_cand|`` over matched pairs,
* ``box_iou``: mean box IoU of matched pairs,
* counts: ``reference``, ``candidate``, ``matched``, ``missed`` (reference unmatched), ``extra``
  (candidate unmatched).

A ratio whose denominator is 0 is ``None`` (no instances on that side), never 1.0. Per-image results rank
the worst images by F1 of the matching (``2*matched / (reference + candidate)``), then by mean matched IoU;
images with no instance on either side agree trivially and are not listed.

Report document (``segdeploy.instance_report`` v1, JSON-ready; keys only ever added)
------------------------------------------------------------------------------------
``{"schema", "schema_version", "task": "instance", "options": {iou_threshold, mask_threshold,
score_threshold}, "num_images", "totals": <stats>, "per_class": {"<label>": <stats>}, "worst_images":
[{stem, reference, candidate, matched, f1, mean_mask_iou, image, height, width, reference_png,
candidate_png}], "reference": {kind, name, ...}, "candidate": {kind, name, path, sha256, providers,
device}, "classes": {"names": [...]}, "command", "versions", "created_by", "gate": {thresholds,
evaluated, passed, failures}}`` with ``<stats> = {reference, candidate, matched, missed, extra,
matched_mask_iou, box_iou, recall, precision, score_drift: {mean, max}}`` (fractions in [0, 1];
``null`` when undefined).

API
---
* :class:`InstanceOptions` -- thresholds (frozen dataclass).
* :func:`instances_from_outputs` -- validate raw arrays into :class:`Instances` (raises on bad shapes/NaN).
* :func:`match_instances` -- one image: the pairs and per-image counts (:class:`ImageMatch`).
* :class:`InstanceAccumulator` -- ``update`` per image, ``merge`` (shards add exactly), ``summary()``.
* :class:`TorchInstanceModel`, :class:`OnnxInstanceModel` -- callables ``image CHW float32 [0,1] ->
  Instances`` for a torchvision-style module and an exported ONNX graph (ONNX Runtime).
* :func:`compare_instances` -- run both models over images and return the JSON-ready report dict.
* :func:`run_instance_check` -- what ``segdeploy check --task instance`` runs (load model files, dataset).
* :func:`format_instance_report` -- the terminal summary.
* :class:`InstanceGate`, :func:`evaluate_instance_gate`, :func:`raise_for_instance_gate` -- the release
  gate (recall / precision / mask IoU floors in percent, score drift ceiling) -> GateError (exit 3).

Raises :class:`~segdeploy.errors.DataError` for malformed outputs (wrong shapes, mismatched lengths,
labels < 0) and :class:`~segdeploy.errors.VerificationError` for NaN/Inf in an output (reported as such,
never as accurate).
"""

from __future__ import annotations

from segdeploy.parity.instances.adapters import InstanceModel, OnnxInstanceModel, RunnerInstanceModel, TorchInstanceModel
from segdeploy.parity.instances.gate import InstanceGate, evaluate_instance_gate, raise_for_instance_gate
from segdeploy.parity.instances.matching import ImageMatch, InstanceAccumulator, Pair, box_iou, mask_iou, match_instances
from segdeploy.parity.instances.model import (OUTPUT_NAMES, SCHEMA_NAME, SCHEMA_VERSION, InstanceOptions, Instances,
                                              instances_from_outputs, instances_to_class_map)
from segdeploy.parity.instances.report import compare_instances, format_instance_report, run_instance_check

__all__ = [
    "ImageMatch", "InstanceAccumulator", "InstanceGate", "InstanceModel", "InstanceOptions", "Instances", "OUTPUT_NAMES",
    "OnnxInstanceModel", "Pair", "RunnerInstanceModel", "SCHEMA_NAME", "SCHEMA_VERSION", "TorchInstanceModel", "box_iou", "compare_instances",
    "evaluate_instance_gate", "format_instance_report", "instances_from_outputs", "instances_to_class_map", "mask_iou",
    "match_instances", "raise_for_instance_gate", "run_instance_check",
]
