"""The instance release gate: recall / precision / mask IoU floors, score drift ceiling -> GateError (exit 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segdeploy.errors import GateError, UsageError


@dataclass(frozen=True)
class InstanceGate:
    """Release gate for instance parity; every threshold optional, in percent (score drift: absolute).

    min_recall / min_precision: matched reference / candidate instances at the IoU threshold;
    min_mask_iou: mean mask IoU of matched pairs; max_score_drift: mean |score_ref - score_cand|.
    """

    min_recall: float | None = None
    min_precision: float | None = None
    min_mask_iou: float | None = None
    max_score_drift: float | None = None

    def __post_init__(self) -> None:
        for name, v in (("--min-recall", self.min_recall), ("--min-precision", self.min_precision),
                        ("--min-mask-iou", self.min_mask_iou)):
            if v is not None and not 0 <= v <= 100:
                raise UsageError(f"{name} {v} must be a percentage in 0..100 (e.g. 99)")
        if self.max_score_drift is not None and not 0 <= self.max_score_drift <= 1:
            raise UsageError(f"--max-score-drift {self.max_score_drift} must be a score difference in 0..1 (e.g. 0.01)")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.min_recall, self.min_precision, self.min_mask_iou, self.max_score_drift))


def evaluate_instance_gate(summary: dict[str, Any], gate: InstanceGate) -> dict[str, Any]:
    """The ``gate`` section for an instance summary: thresholds, evaluated, passed, failures (one line each).

    A metric that is undefined (no instances on that side) fails a threshold that needs it, with that reason.
    """
    thresholds = {"min_recall_percent": gate.min_recall, "min_precision_percent": gate.min_precision,
                  "min_mask_iou_percent": gate.min_mask_iou, "max_score_drift": gate.max_score_drift}
    if not gate.active:
        return {"thresholds": thresholds, "evaluated": False, "passed": None, "failures": []}
    t = summary["totals"]
    failures: list[str] = []
    for label, key, limit in (("recall", "recall", gate.min_recall), ("precision", "precision", gate.min_precision),
                              ("matched mask IoU", "matched_mask_iou", gate.min_mask_iou)):
        if limit is None:
            continue
        v = t.get(key)
        if v is None:
            failures.append(f"{label} is undefined (no instances to compare) < required {limit:g} %")
        elif 100.0 * v < limit:
            failures.append(f"{label} {100.0 * v:.2f} % < {limit:g} % "
                            f"({t['matched']} matched of {t['reference']} reference / {t['candidate']} candidate instances)")
    if gate.max_score_drift is not None:
        v = t["score_drift"]["mean"]
        if v is None:
            failures.append(f"score drift is undefined (no matched instances) > allowed {gate.max_score_drift:g}")
        elif v > gate.max_score_drift:
            failures.append(f"score drift {v:.4f} > {gate.max_score_drift:g} (max {t['score_drift']['max']:.4f})")
    return {"thresholds": thresholds, "evaluated": True, "passed": not failures, "failures": failures}


def raise_for_instance_gate(gate_section: dict[str, Any]) -> None:
    """Raise GateError (exit 3) with every tripped threshold when an evaluated gate failed."""
    if gate_section.get("evaluated") and not gate_section.get("passed"):
        raise GateError("instance parity gate failed: " + "; ".join(gate_section["failures"]))
