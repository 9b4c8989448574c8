"""The parity report document: schema constants, metric reduction, validation and file I/O.

The schema is documented in docs/parity_report.md (``segdeploy.parity_report``, version 1). Everything
that renders a report (terminal table, HTML) reads only this document. :func:`metrics_from_confusion`
is the single place where confusion matrices become the ``metrics`` section, used by both the check
loop and the shard merge (so a merged report is computed exactly like an unsharded one).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.fsutil import atomic_write_json
from segdeploy.metrics import ConfusionMatrix

MAX_REPORT_BYTES = 256 << 20  # worst-image class maps make reports MBs, not hundreds of MBs

SCHEMA_NAME = "segdeploy.parity_report"
SCHEMA_VERSION = 1

REQUIRED = (
    "schema",
    "schema_version",
    "partial",
    "mode",
    "reference",
    "candidate",
    "dataset",
    "classes",
    "confusion",
    "metrics",
    "worst_images",
    "errors",
    "nonfinite",
    "timing",
    "gate",
)

_DRIFT_KEYS = ("miou", "pixel_accuracy", "mean_pixel_accuracy", "fwiou", "mean_dice")


def _points(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else 100.0 * (a - b)


def metrics_from_confusion(
    reference: ConfusionMatrix | None, candidate: ConfusionMatrix | None, agreement: ConfusionMatrix
) -> dict[str, Any]:
    """The ``metrics`` section: summaries of each matrix and (labelled) the drift in points."""
    out: dict[str, Any] = {
        "reference": reference.summary() if reference is not None else None,
        "candidate": candidate.summary() if candidate is not None else None,
        "agreement": agreement.summary(),
        "drift": None,
    }
    if reference is not None and candidate is not None:
        r, c = out["reference"], out["candidate"]
        drift = {f"{k}_points": _points(r[k], c[k]) for k in _DRIFT_KEYS}
        drift["per_class_iou_points"] = [_points(a, b) for a, b in zip(r["per_class_iou"], c["per_class_iou"])]
        out["drift"] = drift
    return out


def confusion_section(
    reference: ConfusionMatrix | None, candidate: ConfusionMatrix | None, agreement: ConfusionMatrix
) -> dict[str, Any]:
    return {
        "reference": reference.to_dict() if reference is not None else None,
        "candidate": candidate.to_dict() if candidate is not None else None,
        "agreement": agreement.to_dict(),
    }


def confusion_from_section(section: dict[str, Any]) -> tuple[ConfusionMatrix | None, ConfusionMatrix | None, ConfusionMatrix]:
    def get(k: str) -> ConfusionMatrix | None:
        return ConfusionMatrix.from_dict(section[k]) if section.get(k) is not None else None

    agreement = get("agreement")
    if agreement is None:
        raise ArtifactError("parity report has no agreement confusion matrix; it is corrupt, re-run the check")
    return get("reference"), get("candidate"), agreement


def versions() -> dict[str, str | None]:
    """Versions of the libraries that influence the numbers (None when not importable/installed)."""
    import numpy

    from segdeploy import __version__

    out: dict[str, str | None] = {"segdeploy": __version__, "numpy": numpy.__version__}
    for mod in ("torch", "onnxruntime", "tensorrt", "PIL"):
        m = sys.modules.get(mod)
        out["pillow" if mod == "PIL" else mod] = getattr(m, "__version__", None) if m is not None else None
    return out


def created_by() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform()}


def validate_report(doc: Any, where: str = "parity report") -> dict[str, Any]:
    """Check the document's schema name, version and required keys. Raises ArtifactError."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_NAME:
        raise ArtifactError(f"{where} is not a segdeploy parity report; pass files written by `segdeploy check --report`")
    ver = doc.get("schema_version")
    if not isinstance(ver, int) or ver > SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has schema version {ver}, this segdeploy reads up to {SCHEMA_VERSION}; upgrade segdeploy"
        )
    for k in REQUIRED:
        if k not in doc:
            raise ArtifactError(f"{where} lacks {k!r}; it is truncated or corrupt, re-run the check")
    if doc["mode"] not in ("labelled", "unlabelled"):
        raise ArtifactError(f"{where} has unknown mode {doc['mode']!r}")
    return doc


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a report file (a regular file: a FIFO or device is one line, never a hang)."""
    from segdeploy import safefs

    from segdeploy.jsonio import load_bytes

    p = Path(path)
    try:
        raw = safefs.read_file(p, fix="pass files written by `segdeploy check --report`", follow=True,
                               limit=MAX_REPORT_BYTES)
    except FileNotFoundError:
        raise ArtifactError(f"parity report {p} not found") from None
    except OSError as e:
        raise ArtifactError(f"cannot read parity report {p}: {e}") from None
    doc = load_bytes(raw, f"parity report {p}", max_bytes=MAX_REPORT_BYTES, fix="re-run the check")
    return validate_report(doc, str(p))


def write_report(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """Validate and write atomically (sorted keys; new file + rename, never through a link). Refuses a path
    that is an export directory's artifact (:func:`segdeploy.exportdir.guard_outputs`). Raises ArtifactError /
    UsageError."""
    from segdeploy.exportdir import guard_outputs

    validate_report(doc, str(path))
    guard_outputs([("--report", path)])
    atomic_write_json(path, doc)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)
