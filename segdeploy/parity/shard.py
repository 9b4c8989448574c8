"""Exact merge of ``--shard I/N`` partial reports.

``merge_reports(partials, gate=GateOptions(...), sources=[...])`` takes the partial report dicts of one sharded
run and returns the complete report: confusion matrices added (exact int64), every metric recomputed by the
same code as an unsharded run, worst-image candidates merged with the same total order, errors concatenated
(sorted by stem), timings summed. A merged report therefore equals the unsharded one in everything but
timings and the recorded command -- provided each image's predictions are the same in both runs
(use the same batch size: some backends pick different kernels per batch size, which can move a
near-tie argmax by one ulp).

Contract
--------
:func:`read_shard` reads one shard report file with a size cap (:data:`MAX_REPORT_BYTES`) and a nesting-depth
cap (:mod:`segdeploy.jsonio`), checks it is a parity report, and checks the types and bounds of every field
the merge uses (:data:`SHARD_SCHEMA`), so a damaged or hostile file is one ArtifactError naming it, never a
traceback or a huge allocation.

:func:`merge_reports` raises ArtifactError, naming the shard files (``sources``), when the inputs are not one
complete sharded run: not partial; run on different datasets (``dataset.fingerprint``, the sha256 of the whole
dataset's listing before sharding, see :meth:`segdeploy.datasets.Dataset.fingerprint`; shards written before
the fingerprint existed merge only with each other); different reference/candidate/manifest/classes/mode/
dataset size; a shard index missing or given twice; a different shard count.
"""

from __future__ import annotations

import os
from typing import Any

from segdeploy.errors import ArtifactError, SegdeployError, UsageError
from segdeploy.jsonio import IntRange, check_types, read_file
from segdeploy.parity.check import worst_sort_key
from segdeploy.parity.gate import GateOptions, evaluate_gate
from segdeploy.parity.report_json import (MAX_REPORT_BYTES, confusion_from_section, confusion_section, metrics_from_confusion,
                                          validate_report)

MAX_SHARDS = 1 << 20
RERUN = "re-run that shard's `segdeploy check --shard I/N --report FILE`"

_COUNT = IntRange(0, 2**63 - 1)
_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_MATRIX = {"num_classes": IntRange(1, 65535), "matrix": list, "?invalid": list, "?ignore_index": (int, type(None))}
_TIMER = {"?calls": _COUNT, "?total_s": _NUM, "?min_ms": _OPT_NUM}
SHARD_SCHEMA: dict[str, Any] = {  # what merge_reports reads, in the type language of segdeploy.jsonio.check_types
    "shard": {"index": IntRange(0, MAX_SHARDS - 1), "count": IntRange(1, MAX_SHARDS)},
    "mode": str,
    "classes": {"num_classes": (IntRange(1, 65535)), "?names": [str]},
    "dataset": {"num_entries": _COUNT, "num_evaluated": _COUNT, "num_skipped": _COUNT, "?num_entries_total": _COUNT,
                "?fingerprint": str},
    "confusion": {"agreement": _MATRIX, "?reference": (dict, type(None)), "?candidate": (dict, type(None))},
    "worst_images": [{"stem": str, "pixel_agreement": _NUM, "?miou_drop_points": _OPT_NUM, "?candidate_miou": _OPT_NUM,
                      "?agreement_miou": _OPT_NUM}],
    "worst_k": _COUNT,
    "errors": [{"stem": str, "kind": str}],
    "nonfinite": {"images": _COUNT, "values": _COUNT},
    "timing": {"reference": _TIMER, "candidate": _TIMER, "total_s": _NUM, "?loop_s": _NUM, "?load_s": _NUM,
               "?preprocess_s": _NUM, "?metrics_s": _NUM, "?open_s": _NUM},
    "gate": {"thresholds": {"?max_miou_drop_points": _OPT_NUM, "?min_agreement_percent": _OPT_NUM,
                            "?min_class_iou_percent": _OPT_NUM}},
    "?notes": [str],
}

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


def read_shard(path: str | os.PathLike) -> dict[str, Any]:
    """Read, parse (bounded) and check one ``check --shard`` report file. Raises ArtifactError naming it."""
    doc = read_file(path, "parity report", max_bytes=MAX_REPORT_BYTES, fix=RERUN)
    return validate_report(doc, str(path))


def _check_partial(p: dict[str, Any], where: str) -> None:
    if not p.get("partial") or not p.get("shard"):
        raise ArtifactError(f"{where} is a complete report, not a --shard result; merge only shard outputs")
    check_types(p, SHARD_SCHEMA, where, RERUN)
    for key in ("reference", "candidate"):
        section = p["confusion"].get(key)
        if section is not None:
            check_types(section, _MATRIX, where, RERUN, path=f"confusion.{key}")
    for key, section in p["confusion"].items():
        if isinstance(section, dict) and len(section["matrix"]) != section["num_classes"]:
            raise ArtifactError(f"{where}: confusion.{key}.matrix has {len(section['matrix'])} rows for "
                                f"{section['num_classes']} classes; {RERUN}")


def _shard_label(p: dict[str, Any], where: str) -> str:
    return f"{where} (shard {p['shard']['index']}/{p['shard']['count']})"


def _check_one_run(partials: list[dict[str, Any]], names: list[str]) -> None:
    """Every shard comes from the same check command on the same dataset, and they cover 0..N-1 once."""
    first, name0 = partials[0], names[0]
    fp0 = first["dataset"].get("fingerprint")
    for p, name in zip(partials[1:], names[1:]):
        fp = p["dataset"].get("fingerprint")
        if fp != fp0:
            shown = " vs ".join(f"{v[:12]}..." if isinstance(v, str) else "none recorded" for v in (fp, fp0))
            raise ArtifactError(
                f"{_shard_label(p, name)} and {_shard_label(first, name0)} were run on different datasets (listing "
                f"fingerprints {shown}); run every shard with the same --data, --masks, --list and --label-map")
        for path in _SAME:
            if _get(p, path) != _get(first, path):
                raise ArtifactError(f"{_shard_label(p, name)} and {_shard_label(first, name0)} differ in "
                                    f"{'.'.join(path)}; all shards must come from the same check command")
    count = first["shard"]["count"]
    for p, name in zip(partials, names):
        if p["shard"]["count"] != count:
            raise ArtifactError(f"{_shard_label(p, name)} and {_shard_label(first, name0)} were written with different "
                                "--shard counts; re-run them with one N")
    by_index: dict[int, list[str]] = {}
    for p, name in zip(partials, names):
        by_index.setdefault(p["shard"]["index"], []).append(name)
    dup = sorted(i for i, files in by_index.items() if len(files) > 1)
    if dup:
        raise ArtifactError(f"shard {dup[0]}/{count} is given more than once ({', '.join(by_index[dup[0]][:3])}; "
                            f"duplicated {dup[:10]}); pass every shard's output once")
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise ArtifactError(f"shards do not cover 0..{count - 1} (missing {missing[:10]}{' ...' if len(missing) > 10 else ''}"
                            f"); pass every shard's output once")


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


def _merged_confusion(partials: list[dict[str, Any]], names: list[str]):
    """The shards' confusion matrices added (reference vs truth, candidate vs truth, agreement). ArtifactError
    naming the shard whose matrices are not square tables of counts."""
    ref = cand = agree = None
    for p, name in zip(partials, names):
        try:
            r, c, a = confusion_from_section(p["confusion"])
        except (TypeError, ValueError, OverflowError) as e:  # numpy is the parser of the matrices
            raise ArtifactError(f"{name}: a confusion matrix is not a square table of counts ({type(e).__name__}); "
                                f"{RERUN}") from None
        except SegdeployError as e:
            raise ArtifactError(f"{name}: {e.message}") from None
        ref = r if ref is None else ref.merge(r) if r is not None else ref
        cand = c if cand is None else cand.merge(c) if c is not None else cand
        agree = a if agree is None else agree.merge(a)
    return ref, cand, agree


def _merged_dataset(partials: list[dict[str, Any]]) -> dict[str, Any]:
    """The first shard's dataset section with the counts summed; ArtifactError when the shards do not add up."""
    ds0 = partials[0]["dataset"]
    dataset = dict(ds0)
    for key in ("num_entries", "num_evaluated", "num_skipped"):
        dataset[key] = int(sum(p["dataset"][key] for p in partials))
    if dataset["num_entries"] != ds0.get("num_entries_total", dataset["num_entries"]):
        raise ArtifactError(
            f"shards hold {dataset['num_entries']} items but the dataset has {ds0['num_entries_total']}; "
            "they were not run on the same dataset"
        )
    return dataset


def _merged_timing(partials: list[dict[str, Any]]) -> dict[str, Any]:
    timings = [p["timing"] for p in partials]
    ref_t = _sum_timing([t["reference"] for t in timings])
    cand_t = _sum_timing([t["candidate"] for t in timings])
    runner_s = ref_t["total_s"] + cand_t["total_s"]
    loop_s = float(sum(t.get("loop_s", t["total_s"]) for t in timings))
    return {
        "reference": ref_t,
        "candidate": cand_t,
        **{k: float(sum(t.get(k, 0.0) for t in timings)) for k in ("load_s", "preprocess_s", "metrics_s", "open_s")},
        "loop_s": loop_s,
        "total_s": float(sum(t["total_s"] for t in timings)),
        "overhead_fraction": (loop_s - runner_s) / runner_s if runner_s > 0 else None,
    }


def merge_reports(partials: list[dict[str, Any]], gate: GateOptions | None = None, command: str | None = None,
                  sources: list[str] | None = None) -> dict[str, Any]:
    """Merge the partial reports of one sharded run (see module docstring); ``sources`` names them in messages."""
    if not partials:
        raise UsageError("segdeploy merge needs at least one shard report")
    names = list(sources) if sources is not None else [f"input {i + 1}" for i in range(len(partials))]
    for p, name in zip(partials, names):
        _check_partial(p, name)
    _check_one_run(partials, names)
    first = partials[0]
    count = first["shard"]["count"]
    ref, cand, agree = _merged_confusion(partials, names)
    mode = first["mode"]
    # every shard kept its own top K; the global top K is the top K of their union
    worst = sorted((w for p in partials for w in p["worst_images"]), key=lambda w: worst_sort_key(w, mode))
    merged = dict(first)
    merged.update(
        {
            "partial": False,
            "shard": {"index": None, "count": count},
            "command": command,
            "dataset": _merged_dataset(partials),
            "confusion": confusion_section(ref, cand, agree),
            "metrics": metrics_from_confusion(ref, cand, agree),
            "worst_images": worst[: int(first.get("worst_k", len(worst)))],
            "errors": sorted((e for p in partials for e in p["errors"]), key=lambda e: (e["stem"], e["kind"])),
            "nonfinite": {key: int(sum(p["nonfinite"][key] for p in partials)) for key in ("images", "values")},
            "timing": _merged_timing(partials),
            "notes": sorted({n for p in partials for n in p.get("notes", [])}) + [f"merged from {count} shards"],
        }
    )
    merged["gate"] = evaluate_gate(merged, gate or GateOptions.from_dict(first["gate"]["thresholds"])).to_dict()
    return merged
