"""The end-to-end stage: one verified ``model[.<prec>].e2e.onnx`` per ONNX precision of an export, in a transaction.

Contract
--------
``run(txn, options, progress, *, reference=None) -> E2EResult`` (the stage contract of :mod:`segdeploy.pipeline`)

* ``txn``: an open :class:`~segdeploy.exportdir.Transaction` holding ``model.onnx`` (and ``model.fp16.onnx`` /
  ``model.int8.onnx`` where the precision stage made them) -- the same transaction as export/precision
  (``--end-to-end``) or a derived one on a published directory.
* ``reference``: the PyTorch model; ``None`` skips the PyTorch comparison (said in the verification, never
  shown as passed).
* For each precision: :func:`segdeploy.export.e2e.build_e2e` around its ONNX (network nodes byte-identical,
  checked), then verification with ONNX Runtime on the CPU at the profile's verification shapes (min, opt, max,
  irregular) plus a frame whose H/W are not multiples of the spatial multiple and one below the profile's minimum
  (both padded in the graph): seeded random uint8 frames go into the variant; the same frames go through
  :func:`segdeploy.datasets.preprocess.to_batch` into the source ONNX and into PyTorch. Passed when the variant's
  class map equals the source ONNX's argmax wherever that pixel's top-2 margin exceeds ``2 * tol``
  (``tol = rtol * max|scores| + atol``, the export verification's rule; ties aside it is 100 %) and, for fp32, the
  same against PyTorch. For fp16/int8 the agreement with PyTorch is measured and reported (the precision stage's
  gate governs their accuracy). Raw agreements and the max |score difference| (with ``with_scores``) are recorded.
* Writes every variant only after all verified (``txn.write_bytes``, kind ``onnx-e2e``, derived from its source,
  so a new ``model.int8.onnx`` retires the old ``model.int8.e2e.onnx`` at commit) and the manifest's ``end_to_end``
  section. Raises UsageError (:func:`~segdeploy.export.e2e.refusal`), VerificationError (first failing precision
  and shape), ArtifactError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from segdeploy.errors import UsageError, VerificationError
from segdeploy.export.e2e import (
    FRAME_DIMS,
    ClassDtype,
    E2ESpec,
    build_e2e,
    network_unchanged,
    refusal,
)
from segdeploy.export.verify import DEFAULT_ATOL, DEFAULT_RTOL
from segdeploy.progress import Progress, as_progress
from segdeploy.spec import ShapeProfile
from segdeploy.vocab import (
    CLASS_MAP_NAME,
    E2E_INPUT_NAME,
    E2E_SCORES_NAME,
    GATED_ORT_LEVEL,
    INPUT_NAME,
    MODEL_ONNX,
    ONNX_PRECISIONS,
    FileKind,
    OrtLevel,
    Precision,
)

RULE = ("class map equal to the source ONNX's argmax (fp32: and PyTorch's) wherever the reference top-2 margin "
        "> 2*tol, tol = rtol*max|scores| + atol")


@dataclass(frozen=True)
class E2EOptions:
    """What ``--end-to-end`` and its options ask for."""

    class_dtype: str = ClassDtype.AUTO
    with_scores: bool = False
    input_order: str | None = None  # RGB | BGR; None: the model's channel order
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    seed: int = 0
    ort_level: str = GATED_ORT_LEVEL
    frames_from: str | None = None  # images to tile into the verification frames (e.g. the validation split)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_dtype", ClassDtype.parse(self.class_dtype, "--class-dtype"))
        object.__setattr__(self, "ort_level", OrtLevel.parse(self.ort_level, "--ort-level"))
        if self.input_order is not None and self.input_order not in ("RGB", "BGR"):
            raise UsageError(f"unknown --frame-order {self.input_order!r}; use RGB or BGR")


@dataclass
class Case:
    """One verification shape: the frames, the preprocessed batch, PyTorch's cropped scores (or None)."""

    label: str
    frames: np.ndarray  # [N, H, W, 3] uint8 in the frame order
    batch: np.ndarray  # [N, 3, H', W'] float32 (to_batch)
    torch_scores: np.ndarray | None


@dataclass
class E2EResult:
    section: dict[str, Any]
    written: dict[str, str]  # precision -> file
    io_bytes: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The stage's entry in the JSON result document."""
        variants = self.section["variants"]
        return {"files": dict(self.written), "input": self.section["input"], "outputs": self.section["outputs"],
                "profile": self.section["profile"], "in_graph": self.section["in_graph"],
                "verification": {p: {k: v["verification"][k] for k in ("passed", "min_agreement_vs_source",
                                                                         "min_agreement_vs_torch")}
                                 for p, v in variants.items()},
                "io_bytes_per_frame": self.io_bytes, "notes": list(self.notes), "seconds": round(self.seconds, 2)}


# ------------------------------------------------------------------------------------------------ cases


def frame_shapes(profile: ShapeProfile) -> list[tuple[str, tuple[int, int, int]]]:
    """(label, (N, H, W)) frames to verify at: the export verification's plan (min, opt, the max batch and the max
    H/W apart -- never the max corner -- and the irregular shape), one frame whose H/W are not multiples of the
    spatial multiple, and one below the profile's minimum H/W (where those differ)."""
    from segdeploy.export.verify import verification_plan

    out = [(label, (s[0], s[2], s[3])) for label, s in verification_plan(profile)]
    n, h, w = profile.opt[0], profile.opt[2] - 1, profile.opt[3] - 1  # opt H/W are multiples: these are not
    if h >= 1 and w >= 1:
        out.append(("unaligned", (n, h, w)))
    if profile.min[2] > 1 and profile.min[3] > 1:
        out.append(("below-min", (profile.min[0], profile.min[2] // 2 + 1, profile.min[3] // 2 + 3)))
    seen: set[tuple[int, int, int]] = set()
    return [(label, s) for label, s in out if not (s in seen or seen.add(s))]


MAX_SOURCE_IMAGES = 16


def source_images(folder: str | None) -> list[np.ndarray]:
    """Up to :data:`MAX_SOURCE_IMAGES` RGB images of ``folder`` (sorted by name; [] for None). Raises DataError."""
    if folder is None:
        return []
    from segdeploy.datasets import list_images, read_image
    from segdeploy.vocab import split_dirs

    found = list_images(split_dirs(folder)[0])
    return [read_image(found[k]) for k in sorted(found)[:MAX_SOURCE_IMAGES]]


def tile_frames(shape: tuple[int, int, int], images: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """[N, H, W, 3] uint8 RGB frames: tiles of ``images`` at seeded offsets, or seeded uniform noise without images
    (noise exercises the graph, but a trained model may call all of it one class: give images where possible)."""
    n, h, w = shape
    if not images:
        return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = images[int(rng.integers(len(images)))]
        reps = (-(-(h + img.shape[0]) // img.shape[0]), -(-(w + img.shape[1]) // img.shape[1]), 1)
        y, x = int(rng.integers(img.shape[0])), int(rng.integers(img.shape[1]))
        out[i] = np.tile(img, reps)[y:y + h, x:x + w]
    return out


def _cases(spec: E2ESpec, module: Any, options: E2EOptions, progress: Progress) -> list[Case]:
    import torch

    from segdeploy.datasets.preprocess import to_batch

    images = source_images(options.frames_from)
    cases = []
    for i, (label, (n, h, w)) in enumerate(frame_shapes(spec.profile)):
        rgb = tile_frames((n, h, w), images, np.random.default_rng(options.seed + i))
        frames = np.ascontiguousarray(rgb[..., ::-1]) if spec.frame_order == "BGR" else rgb
        batch, _ = to_batch(list(rgb), spec.preprocess, spec.profile)
        ref = None
        if module is not None:
            progress.step(f"end-to-end: PyTorch at {label} frame {n}x{h}x{w}x3")
            with torch.inference_mode():
                ref = module(torch.from_numpy(batch)).float().numpy()[:, :, :h, :w]
        cases.append(Case(label, frames, batch, ref))
    return cases


# ------------------------------------------------------------------------------------------------ comparison


def class_map(scores: np.ndarray) -> np.ndarray:
    """[N, K, H, W] scores -> [N, H, W] class ids (one channel: score > 0 is class 1)."""
    return (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(1)


def _decisive(ref: np.ndarray, classes: np.ndarray, rtol: float, atol: float) -> tuple[float, int]:
    """(raw agreement, disagreements where the reference is decisive: top-2 margin (or |score|) > 2*tol)."""
    tol = rtol * float(np.max(np.abs(ref))) + atol if ref.size else atol
    if ref.shape[1] == 1:
        margin = np.abs(ref[:, 0])
    else:
        part = np.partition(ref, -2, axis=1)
        margin = part[:, -1] - part[:, -2]
    differ = class_map(ref) != classes
    return float(1.0 - differ.mean()), int(np.sum(differ & (margin > 2 * tol)))


def _session(data: bytes, level: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OrtLevel(level).ort_name)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _check_case(case: Case, plain, e2e, spec: E2ESpec, options: E2EOptions, gate_torch: bool) -> dict[str, Any]:
    n, h, w = case.frames.shape[:3]
    src = plain.run(None, {INPUT_NAME: case.batch})[0][:, :, :h, :w]
    outs = dict(zip([o.name for o in e2e.get_outputs()], e2e.run(None, {E2E_INPUT_NAME: case.frames})))
    classes = outs[CLASS_MAP_NAME]
    rec: dict[str, Any] = {"label": case.label, "frame": [n, h, w, 3], "network_input": list(case.batch.shape),
                           "class_map": [str(classes.dtype), list(classes.shape)]}
    want = np.uint8 if spec.map_dtype == ClassDtype.UINT8 else np.int32
    if classes.shape != (n, h, w) or classes.dtype != want:
        rec.update(passed=False, error=f"class map {classes.dtype}{list(classes.shape)}, expected "
                                       f"{np.dtype(want)}{[n, h, w]}")
        return rec
    rec["agreement_vs_source"], rec["decisive_vs_source"] = _decisive(src, classes, options.rtol, options.atol)
    if E2E_SCORES_NAME in outs:
        rec["max_abs_score_diff_vs_source"] = float(np.max(np.abs(outs[E2E_SCORES_NAME].astype(np.float64) - src)))
    ok = rec["decisive_vs_source"] == 0
    if case.torch_scores is not None:
        rec["agreement_vs_torch"], rec["decisive_vs_torch"] = _decisive(case.torch_scores, classes, options.rtol,
                                                                        options.atol)
        ok = ok and (not gate_torch or rec["decisive_vs_torch"] == 0)
    rec["passed"] = ok
    if not ok:
        rec["error"] = (f"{rec['decisive_vs_source']} pixel(s) differ from the source ONNX" if rec["decisive_vs_source"]
                        else f"{rec['decisive_vs_torch']} pixel(s) differ from PyTorch")
    return rec


def verify(e2e_bytes: bytes, source_bytes: bytes, precision: str, spec: E2ESpec, cases: list[Case],
           options: E2EOptions) -> dict[str, Any]:
    """The variant against its source ONNX (and PyTorch) on ``cases`` -> the verification record."""
    plain, e2e = _session(source_bytes, options.ort_level), _session(e2e_bytes, options.ort_level)
    gate_torch = precision == Precision.FP32
    shapes = [_check_case(c, plain, e2e, spec, options, gate_torch) for c in cases]
    torch_agree = [s["agreement_vs_torch"] for s in shapes if "agreement_vs_torch" in s]
    return {
        "passed": all(s["passed"] for s in shapes), "rule": RULE, "rtol": options.rtol, "atol": options.atol,
        "runtime": f"onnxruntime CPUExecutionProvider, {OrtLevel(options.ort_level).ort_name}",
        "torch": ("compared, gated" if gate_torch else "compared, reported (the precision gate governs accuracy)")
        if torch_agree else "not compared: no PyTorch model was given",
        "min_agreement_vs_source": min((s.get("agreement_vs_source", 0.0) for s in shapes), default=0.0),
        "min_agreement_vs_torch": min(torch_agree) if torch_agree else None,
        "frames": (f"tiles of images from {options.frames_from} (seed {options.seed})" if options.frames_from
                   else f"seeded uniform noise (seed {options.seed})"),
        "shapes": shapes,
    }


# ------------------------------------------------------------------------------------------------ the stage


def spec_of(view: Any, options: E2EOptions) -> E2ESpec:
    """The :class:`E2ESpec` of an export (a ManifestView) under ``options``; UsageError when it cannot have one."""
    reason = refusal(view.preprocess, view.output_stride, view.in_channels, view.num_classes, options.class_dtype)
    if reason:
        raise UsageError(reason)
    return E2ESpec(view.preprocess, view.profile, view.num_classes, options.class_dtype, options.with_scores,
                   options.input_order)


def sources(view: Any) -> list[tuple[Precision, str]]:
    """(precision, ONNX file) of every ONNX precision the export holds, fp32 first."""
    out = []
    for p in ONNX_PRECISIONS:
        name = MODEL_ONNX if p == Precision.FP32 else view.lowered_file(p)
        if name and view.has(name):
            out.append((p, name))
    return out


def io_bytes_per_frame(spec: E2ESpec, h: int, w: int) -> dict[str, Any]:
    """Bytes copied in and out for one H x W frame: the plain model (float32 NCHW in, float32 scores out, padded)
    vs the end-to-end variant (uint8 NHWC in, the class map out)."""
    m, prof = spec.profile.spatial_multiple, spec.profile
    ph, pw = max(-(-h // m) * m, prof.min[2]), max(-(-w // m) * m, prof.min[3])
    k = max(1, spec.num_classes)
    per_px = 1 if spec.map_dtype == ClassDtype.UINT8 else 4
    plain = {"in": 4 * 3 * ph * pw, "out": 4 * k * ph * pw}
    e2e = {"in": 3 * h * w, "out": per_px * h * w + (4 * k * h * w if spec.with_scores else 0)}
    return {"frame": [h, w], "plain": plain, "end_to_end": e2e,
            "ratio": round((plain["in"] + plain["out"]) / (e2e["in"] + e2e["out"]), 2)}


def run(txn: Any, options: E2EOptions, progress: Progress | Any = None, *,
        reference: Any = None) -> E2EResult:
    """Build, verify and stage the end-to-end variants (see the module docstring; the pipeline's stage contract,
    ``reference`` the PyTorch module)."""
    progress = as_progress(progress)
    reference_module = reference
    t0 = time.perf_counter()
    spec = spec_of(txn, options)
    todo = sources(txn)
    cases = _cases(spec, reference_module, options, progress)
    built: dict[str, tuple[bytes, str, dict[str, Any]]] = {}
    for p, src in todo:
        progress.step(f"end-to-end: {p.e2e_file} from {src}")
        network = onnx.load(str(txn.staged(src)))
        data = build_e2e(network, spec).SerializeToString()
        if not network_unchanged(network, onnx.load_from_string(data)):
            raise VerificationError(f"the end-to-end variant of {src} changed the network's nodes; this is a segdeploy "
                                    "bug, please report it")
        record = verify(data, txn.staged(src).read_bytes(), p, spec, cases, options)
        bad = next((s for s in record["shapes"] if not s["passed"]), None)
        if bad is not None:
            raise VerificationError(f"the end-to-end variant of {src} disagrees at the {bad['label']} frame "
                                    f"{'x'.join(map(str, bad['frame']))}: {bad['error']}; report this with the model")
        built[p] = (data, src, record)
    written = {}
    for p, (data, src, _) in built.items():
        txn.write_bytes(p.e2e_file, data, FileKind.ONNX_E2E, derived_from=(src,))
        written[p] = p.e2e_file
    section = _section(spec, {p: (p.e2e_file, src, rec) for p, (_, src, rec) in built.items()})
    txn.set_section("end_to_end", section)
    opt = spec.profile.opt
    return E2EResult(section, written, io_bytes_per_frame(spec, opt[2], opt[3]), seconds=time.perf_counter() - t0)


def _section(spec: E2ESpec, variants: dict[str, tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """The manifest's ``end_to_end`` section."""
    prof, pre = spec.profile, spec.preprocess
    n = "batch" if prof.min[0] != prof.max[0] else prof.opt[0]
    fh, fw = FRAME_DIMS
    outputs = [{"name": CLASS_MAP_NAME, "dtype": str(spec.map_dtype), "layout": "NHW", "shape": [n, fh, fw],
                "meaning": "class id per pixel of the frame" + (" (score > 0: class 1)" if spec.num_classes == 1
                                                                 else " (argmax of the scores)")}]
    if spec.with_scores:
        outputs.append({"name": E2E_SCORES_NAME, "dtype": "float32", "layout": "NCHW",
                        "shape": [n, max(1, spec.num_classes), fh, fw], "meaning": "the scores, cropped to the frame"})
    m = prof.spatial_multiple
    steps = ["Cast uint8 -> float32"] + ([f"channels {spec.frame_order} -> {pre.channel_order}"]
                                         if spec.swaps_channels else [])
    steps += ["Transpose NHWC -> NCHW", f"x = (x * {pre.scale!r} - mean {list(pre.mean)}) / std {list(pre.std)}"]
    if spec.pads:
        steps += [(f"Pad bottom/right with 0 to max(ceil(H/{m})*{m}, {prof.min[2]}) x max(ceil(W/{m})*{m}, "
                  f"{prof.min[3]})"), "the network", "Slice the scores back to H x W"]
    else:
        steps.append("the network")
    steps.append("score > 0" if spec.num_classes == 1 else "ArgMax over the classes")
    steps.append(f"Cast to {spec.map_dtype}")
    return {
        "input": {"name": E2E_INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "shape": [n, fh, fw, 3],
                  "channel_order": spec.frame_order},
        "outputs": outputs,
        "profile": {"min": [prof.min[0], 1, 1, 3], "opt": [prof.opt[0], prof.opt[2], prof.opt[3], 3],
                    "max": [prof.max[0], prof.max[2], prof.max[3], 3], "spatial_multiple": 1,
                    "dynamic_axes": ["batch", "height", "width"] if n == "batch" else ["height", "width"]},
        "in_graph": steps,
        "variants": {p: {"file": f, "source_onnx": src, "verification": rec} for p, (f, src, rec) in variants.items()},
    }
