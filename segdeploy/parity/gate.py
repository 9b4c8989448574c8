"""The release gate: is the candidate's accuracy within budget?

``GateOptions(max_miou_drop=0.5, min_agreement=99.0, min_class_iou=50.0)`` -- all optional; drop in
percentage points, the others in percent. :func:`evaluate_gate` reads a parity report's ``metrics``
(see docs/parity_report.md) and returns a :class:`GateResult`; :func:`raise_for_gate` raises
:class:`~segdeploy.errors.GateError` (exit code 3) whose one-line message carries every number that tripped.

Definitions: labelled mode -- mIoU drop = reference mIoU - candidate mIoU vs ground truth; unlabelled --
100 - agreement mIoU (the reference scores 100 % against itself). ``min_agreement`` applies to pixel
agreement (candidate == reference) in both modes; ``min_class_iou`` to the candidate's IoU of every class
present (vs ground truth when labelled, vs reference otherwise). Candidate NaN/Inf outputs and an empty
evaluation always fail an evaluated gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segdeploy.errors import GateError, UsageError


@dataclass(frozen=True)
class GateOptions:
    max_miou_drop: float | None = None  # percentage points
    min_agreement: float | None = None  # percent
    min_class_iou: float | None = None  # percent

    def __post_init__(self) -> None:
        if self.max_miou_drop is not None and not 0 <= self.max_miou_drop <= 100:
            raise UsageError(f"--max-miou-drop {self.max_miou_drop} must be in points, 0..100 (e.g. 0.5)")
        for name, v in (("--min-agreement", self.min_agreement), ("--min-class-iou", self.min_class_iou)):
            if v is None:
                continue
            if not 0 <= v <= 100:
                raise UsageError(f"{name} {v} must be a percentage in 0..100 (e.g. 99.5)")
            if 0 < v <= 1:
                raise UsageError(
                    f"{name} {v} looks like a fraction; it is in percent, so write e.g. {v * 100:g} for {v * 100:g} %"
                )

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_miou_drop, self.min_agreement, self.min_class_iou))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_miou_drop_points": self.max_miou_drop,
            "min_agreement_percent": self.min_agreement,
            "min_class_iou_percent": self.min_class_iou,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GateOptions":
        return cls(d.get("max_miou_drop_points"), d.get("min_agreement_percent"), d.get("min_class_iou_percent"))


@dataclass(frozen=True)
class GateResult:
    thresholds: GateOptions
    evaluated: bool
    passed: bool | None
    failures: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds.to_dict(),
            "evaluated": self.evaluated,
            "passed": self.passed,
            "failures": list(self.failures),
        }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _class_name(c: int, names: list[str]) -> str:
    return f"{c} ({names[c]})" if c < len(names) and names[c] else str(c)


def evaluate_gate(report: dict[str, Any], options: GateOptions) -> GateResult:
    """Evaluate ``options`` against a (complete, non-partial) report dict."""
    if not options.active:
        return GateResult(options, False, None)
    m = report["metrics"]
    labelled = report["mode"] == "labelled"
    names = list(report.get("classes", {}).get("names") or [])
    fails: list[str] = []
    if report["dataset"]["num_evaluated"] == 0:
        fails.append("no image could be evaluated")
    nf = report.get("nonfinite", {}).get("images", 0)
    if nf:
        fails.append(f"candidate produced NaN/Inf outputs on {nf} image(s) ({report['nonfinite'].get('values', 0)} values)")
    agree = m["agreement"]
    if options.max_miou_drop is not None:
        if labelled:
            drop = m["drift"]["miou_points"] if m.get("drift") else None
            detail = f"reference {_pct(m['reference']['miou'])}, candidate {_pct(m['candidate']['miou'])}"
        else:
            drop = None if agree["miou"] is None else 100.0 * (1.0 - agree["miou"])
            detail = f"agreement mIoU {_pct(agree['miou'])}"
        if drop is None:
            fails.append("mIoU drop is undefined (no pixels evaluated)")
        elif drop > options.max_miou_drop:
            fails.append(f"mIoU drop {drop:.3f} points > budget {options.max_miou_drop:g} ({detail})")
    if options.min_agreement is not None:
        pa = agree["pixel_accuracy"]
        if pa is None or 100.0 * pa < options.min_agreement:
            fails.append(f"pixel agreement {_pct(pa)} < minimum {options.min_agreement:g} %")
    if options.min_class_iou is not None:
        per = (m["candidate"] if labelled else agree)["per_class_iou"]
        low = [(c, v) for c, v in enumerate(per) if v is not None and 100.0 * v < options.min_class_iou]
        if low:
            shown = ", ".join(f"class {_class_name(c, names)} {100 * v:.2f} %" for c, v in low[:5])
            more = f" and {len(low) - 5} more" if len(low) > 5 else ""
            fails.append(f"per-class IoU below {options.min_class_iou:g} %: {shown}{more}")
    return GateResult(options, True, not fails, tuple(fails))


def raise_for_gate(result: GateResult) -> None:
    """Raise GateError (exit 3) when an evaluated gate failed."""
    if result.evaluated and not result.passed:
        raise GateError("accuracy gate failed: " + "; ".join(result.failures))
