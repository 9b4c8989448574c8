"""The end-to-end variant beside the plain model on ONNX Runtime's CPU provider (``segdeploy bench`` on an export
directory made with ``--end-to-end``; ``benchmarks/e2e_io.py``).

Contract
--------
:func:`measure_pair` ``(plain_onnx, e2e_onnx, frames, preprocess, profile, iters, warmup, threads)`` times, on the
same seeded uint8 RGB ``frames`` ``[N, H, W, 3]``, interleaved in each round:

* plain: host preprocessing (:func:`segdeploy.datasets.preprocess.to_batch`: float32 NCHW, padded to the profile's
  multiple) -> ``session.run`` -> host crop + argmax over the K score planes -> class map;
* end-to-end: ``session.run`` on the frames as they are -> class map (preprocessing, pad, crop, argmax in the graph).

Returns the median milliseconds of each part (``host_pre``, ``run``, ``host_post``, ``plain_total``, ``e2e_run``),
``speedup_total`` (plain total / end-to-end, medians), the bytes each path moves across the model boundary per frame,
and whether both class maps are equal (they must be: the variant was verified at export).

:func:`e2e_rows` ``(artifacts, shapes, iters, warmup, threads, progress)``: one :func:`measure_pair` row per export
directory among ``artifacts`` that holds end-to-end variants, per precision with a variant, per bench shape
(``N x C x H x W`` -> ``N`` frames of ``H x W``). The rows go into the bench document as ``end_to_end``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from segdeploy.progress import Progress, as_progress
from segdeploy.spec import Preprocess, ShapeProfile
from segdeploy.vocab import (
    E2E_INPUT_NAME,
    INPUT_NAME,
    MODEL_ONNX,
    ONNX_PRECISIONS,
    Precision,
)

PARTS = ("host_pre", "run", "host_post", "e2e_run")


def session(path: Path, threads: int | None):
    """An ONNX Runtime CPU session (``threads``: intra-op threads, None the library's default)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _median_ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 3)


def measure_pair(plain_onnx: Path, e2e_onnx: Path, frames: np.ndarray, preprocess: Preprocess, profile: ShapeProfile,
                 iters: int = 20, warmup: int = 3, threads: int | None = None) -> dict[str, Any]:
    """The plain path (host pre/post included) against the end-to-end variant (see the module docstring)."""
    from segdeploy.datasets.preprocess import to_batch

    plain, e2e = session(plain_onnx, threads), session(e2e_onnx, threads)
    n, h, w = frames.shape[:3]
    times: dict[str, list[float]] = {k: [] for k in PARTS}
    for i in range(iters + warmup):
        t0 = time.perf_counter()
        x, _ = to_batch(list(frames), preprocess, profile)
        t1 = time.perf_counter()
        scores = plain.run(None, {INPUT_NAME: x})[0]
        t2 = time.perf_counter()
        ref = scores[:, :, :h, :w].argmax(1) if scores.shape[1] > 1 else (scores[:, 0, :h, :w] > 0)
        t3 = time.perf_counter()
        got = e2e.run(None, {E2E_INPUT_NAME: frames})[0]
        t4 = time.perf_counter()
        if i >= warmup:
            for k, v in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[k].append(v)
    plain_total = [a + b + c for a, b, c in zip(times["host_pre"], times["run"], times["host_post"])]
    return {
        "plain_onnx": plain_onnx.name, "e2e_onnx": e2e_onnx.name, "frames": [n, h, w, 3], "iters": iters,
        "class_maps_equal": bool(np.array_equal(ref.astype(np.int64), got.astype(np.int64))),
        "ms": {**{k: _median_ms(v) for k, v in times.items()}, "plain_total": _median_ms(plain_total)},
        "speedup_total": round(statistics.median(plain_total) / statistics.median(times["e2e_run"]), 2),
        "bytes_per_frame": {"plain": {"in": x.nbytes // n, "out": scores.nbytes // n},
                            "end_to_end": {"in": frames.nbytes // n, "out": got.nbytes // n}},
    }


def _export_dirs(artifacts: list[Any]) -> list[Any]:
    from segdeploy.exportdir import ExportDir

    out = []
    for a in artifacts:
        p = Path(a)
        if p.is_dir():
            ed = ExportDir.open(p)  # already validated by the target expansion
            if ed.end_to_end:
                out.append(ed)
    return out


def e2e_rows(artifacts: list[Any], shapes: list[tuple[int, ...]], *, iters: int, warmup: int, threads: int | None,
             seed: int = 0, progress: Progress | None = None) -> list[dict[str, Any]]:
    """The ``end_to_end`` rows of the bench document (see the module docstring); [] when no artifact has variants."""
    progress = as_progress(progress)
    rows = []
    for ed in _export_dirs(artifacts):
        for p in ONNX_PRECISIONS:
            e2e_file = ed.e2e_file(p)
            if not e2e_file:
                continue
            plain_file = MODEL_ONNX if p == Precision.FP32 else ed.lowered_file(p)
            for s in shapes:
                n, h, w = s[0], s[2], s[3]
                progress.step(f"end-to-end vs plain on ONNX Runtime CPU: {e2e_file} at {n}x{h}x{w}x3 frames")
                frames = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
                row = measure_pair(ed.file(plain_file), ed.file(e2e_file), frames, ed.preprocess, ed.profile,
                                   iters, warmup, threads)
                rows.append({"export_dir": str(ed.path), "precision": str(p), **row})
    return rows
