"""Exact merge of ``--shard I/N`` partial reports.

``merge_reports(partials, gate=GateOptions(...))`` takes the partial report dicts of one sharded run and
returns the complete report: confusion matrices added (exact int64), every metric recomputed by the same
code as an unsharded run, worst-image candidates merged with the same total order, errors concatenated
(sorted by stem), timings summed. A merged report therefore equals the unsharded one in everything but
timings and the recorded command -- provided each image's predictions are the same in both runs
(use the same batch size: some backends pick different kernels per batch size, which can move a
near-tie argmax by one ulp).

Raises ArtifactError when the inputs are not one complete sharded run: not partial, different
reference/candidate/manifest/classes/mode/dataset size, a shard index missing or given twice, or a
different shard count.
"""

from __future__ import annotations

from typing import Any

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.parity.check import worst_sort_key
from segdeploy.parity.gate import GateOptions, evaluate_gate
from segdeploy.parity.report_json import confusion_from_section, confusion_section, metrics_from_confusion

_SAME = (
    ("mode",),
    ("reference", "sha256"),
    ("reference", "kind"),
    ("candidate", "sha256"),
    ("candidate", "kind"),
    ("candidate", "graph_optimization_level"),
    ("classes",),
    ("preprocess",),
    ("profile",),
    ("dataset", "num_entries_total"),
    ("worst_k",),
    ("schema_version",),
)


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


def _sum_timing(items: list[dict[str, Any]]) -> dict[str, Any]:
    calls = sum(t.get("calls", 0) for t in items)
    total = sum(t.get("total_s", 0.0) for t in items)
    mins = [t["min_ms"] for t in items if t.get("min_ms") is not None]
    return {
        "calls": calls,
        "total_s": total,
        "mean_ms": total / calls * 1e3 if calls else None,
        "median_ms": None,  # not recoverable from shard summaries
        "p90_ms": None,
        "min_ms": min(mins) if mins else None,
    }


def merge_reports(partials: list[dict[str, Any]], gate: GateOptions | None = None, command: str | None = None) -> dict[str, Any]:
    """Merge the partial reports of one sharded run (see module docstring)."""
    if not partials:
        raise UsageError("segdeploy merge needs at least one shard report")
    for i, p in enumerate(partials):
        if not p.get("partial") or not p.get("shard"):
            raise ArtifactError(f"input {i + 1} is a complete report, not a --shard result; merge only shard outputs")
    first = partials[0]
    for p in partials[1:]:
        for path in _SAME:
            if _get(p, path) != _get(first, path):
                raise ArtifactError(
                    f"shard {p['shard']['index']} differs from shard {first['shard']['index']} in {'.'.join(path)}; "
                    "all shards must come from the same check command"
                )
    count = first["shard"]["count"]
    idx = sorted(p["shard"]["index"] for p in partials)
    if any(p["shard"]["count"] != count for p in partials):
        raise ArtifactError("shards were written with different --shard counts; re-run them with one N")
    if idx != list(range(count)):
        missing = sorted(set(range(count)) - set(idx))
        dup = sorted({i for i in idx if idx.count(i) > 1})
        raise ArtifactError(
            f"shards do not cover 0..{count - 1} exactly once (missing {missing}, duplicated {dup}); "
            "pass every shard's output once"
        )
    ref = cand = None
    agree = None
    for p in partials:
        r, c, a = confusion_from_section(p["confusion"])
        ref = r if ref is None else ref.merge(r) if r is not None else ref
        cand = c if cand is None else cand.merge(c) if c is not None else cand
        agree = a if agree is None else agree.merge(a)
    mode = first["mode"]
    # every shard kept its own top K; the global top K is the top K of their union
    worst = sorted((w for p in partials for w in p["worst_images"]), key=lambda w: worst_sort_key(w, mode))
    worst = worst[: int(first.get("worst_k", len(worst)))]
    errors = sorted((e for p in partials for e in p["errors"]), key=lambda e: (e["stem"], e["kind"]))
    ds0 = first["dataset"]
    dataset = dict(ds0)
    for key in ("num_entries", "num_evaluated", "num_skipped"):
        dataset[key] = int(sum(p["dataset"][key] for p in partials))
    if dataset["num_entries"] != ds0.get("num_entries_total", dataset["num_entries"]):
        raise ArtifactError(
            f"shards hold {dataset['num_entries']} items but the dataset has {ds0['num_entries_total']}; "
            "they were not run on the same dataset"
        )
    timings = [p["timing"] for p in partials]
    ref_t = _sum_timing([t["reference"] for t in timings])
    cand_t = _sum_timing([t["candidate"] for t in timings])
    runner_s = ref_t["total_s"] + cand_t["total_s"]
    total_s = float(sum(t["total_s"] for t in timings))
    loop_s = float(sum(t.get("loop_s", t["total_s"]) for t in timings))
    merged = dict(first)
    merged.update(
        {
            "partial": False,
            "shard": {"index": None, "count": count},
            "command": command,
            "dataset": dataset,
            "confusion": confusion_section(ref, cand, agree),
            "metrics": metrics_from_confusion(ref, cand, agree),
            "worst_images": worst,
            "errors": errors,
            "nonfinite": {
                "images": int(sum(p["nonfinite"]["images"] for p in partials)),
                "values": int(sum(p["nonfinite"]["values"] for p in partials)),
            },
            "timing": {
                "reference": ref_t,
                "candidate": cand_t,
                "load_s": float(sum(t.get("load_s", 0.0) for t in timings)),
                "preprocess_s": float(sum(t.get("preprocess_s", 0.0) for t in timings)),
                "metrics_s": float(sum(t.get("metrics_s", 0.0) for t in timings)),
                "open_s": float(sum(t.get("open_s", 0.0) for t in timings)),
                "loop_s": loop_s,
                "total_s": total_s,
                "overhead_fraction": (loop_s - runner_s) / runner_s if runner_s > 0 else None,
            },
            "notes": sorted({n for p in partials for n in p.get("notes", [])}) + [f"merged from {count} shards"],
        }
    )
    if gate is None:
        gate = GateOptions.from_dict(first["gate"]["thresholds"])
    merged["gate"] = evaluate_gate(merged, gate).to_dict()
    return merged
