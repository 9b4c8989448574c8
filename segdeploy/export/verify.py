"""Verification: the exported ONNX, run by ONNX Runtime on the CPU, against PyTorch at several shapes.

Contract: :func:`verify_onnx` runs the *original* PyTorch module (before any export rewrite) and the
ONNX graph on the same seeded random inputs at each shape of :func:`verification_plan` and returns a
:class:`VerificationReport` (its ``to_dict()`` is the manifest's ``verification`` section, which says which
shapes were verified and how they were chosen). A shape passes when

* ``max_abs_err <= tol`` with ``tol = rtol * max(|reference|) + atol`` (tolerance scaled to the output
  magnitude: randomly initialised networks produce outputs anywhere from 1e-3 to 1e4), and
* the per-pixel argmax agrees everywhere the reference's top-2 margin exceeds ``2 * tol`` (a pixel whose
  two best classes are closer than the numerical noise may flip legitimately; raw agreement is reported too).

:func:`failure_message` names the first failing shape and its error (one line).

The plan (bounded memory)
-------------------------
Batch and height/width are independent axes of a segmentation graph, so the corner ``max`` (max batch *and*
max H/W at once) is not run: it costs ``max_batch`` times the memory of the largest image, which is what
exhausted CI runners (6-8 GB for a U-Net at 8x3x1024x1024). The plan is min, opt, ``max-batch`` (the max batch
at opt H/W), ``max-hw`` (batch 1 at the max H/W) and one irregular in-range shape (another batch, H != W);
where the max batch is 1 or the max H/W equals opt the corner *is* one of these and is run under the label
``max``. The report records the plan and whether the corner was run (``corner_verified``). Each shape is a
counted step of the :class:`~segdeploy.progress.Progress` (a bar on a terminal, plain lines in a log).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from segdeploy.errors import VerificationError
from segdeploy.progress import Progress, as_progress
from segdeploy.spec import Shape, ShapeProfile

SEPARATE_AXES = ("batch and height/width are independent axes: the max batch is verified at opt H/W and the max "
                 "H/W at batch 1, not both at once (bounded memory)")


def verification_plan(profile: ShapeProfile) -> list[tuple[str, Shape]]:
    """The shapes verified, labelled (see "The plan" in the module docstring): min, opt and the max always (as
    before), the max-batch / max-hw / irregular shapes only where they differ from the shapes already planned."""
    lo, opt, hi = profile.min, profile.opt, profile.max
    c = profile.channels
    max_batch = (hi[0], c, opt[2], opt[3])
    max_hw = (lo[0], c, hi[2], hi[3])
    planned: list[tuple[str, Shape]] = [("min", lo), ("opt", opt)]
    if max_batch == hi or max_hw == hi:
        planned.append(("max", hi))
    else:
        planned += [("max-batch", max_batch), ("max-hw", max_hw)]
    irregular = dict(profile.verification_shapes()).get("irregular")
    if irregular is not None:
        planned.append(("irregular", irregular))
    out: list[tuple[str, Shape]] = planned[:2]  # min and opt always (as labels), even where they coincide
    for label, shape in planned[2:]:
        if all(tuple(shape) != tuple(s) for _, s in out) or label == "max":
            out.append((label, tuple(shape)))
    return out


def corner_verified(profile: ShapeProfile) -> bool:
    """Whether :func:`verification_plan` runs the profile's max corner itself."""
    return any(s == tuple(profile.max) for _, s in verification_plan(profile))

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


@dataclass(frozen=True)
class ShapeCheck:
    label: str
    shape: tuple[int, ...]
    passed: bool
    max_abs_err: float
    ref_max_abs: float
    tolerance: float
    argmax_agreement: float  # raw fraction of pixels with equal argmax
    decisive_disagreements: int  # argmax flips where the reference margin exceeds 2*tol
    seconds_torch: float
    seconds_onnx: float
    error: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        del d["seconds_torch"], d["seconds_onnx"]  # timings vary run to run; the manifest must not
        return d


@dataclass
class VerificationReport:
    shapes: list[ShapeCheck] = field(default_factory=list)
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    runtime: str = "onnxruntime CPUExecutionProvider"
    corner_verified: bool = True  # the profile's max corner was one of the verified shapes

    @property
    def passed(self) -> bool:
        return bool(self.shapes) and all(s.passed for s in self.shapes)

    @property
    def worst_max_abs_err(self) -> float:
        return max((s.max_abs_err for s in self.shapes if s.error is None), default=float("nan"))

    @property
    def min_argmax_agreement(self) -> float:
        return min((s.argmax_agreement for s in self.shapes if s.error is None), default=float("nan"))

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "runtime": self.runtime,
            "rtol": self.rtol,
            "atol": self.atol,
            "rule": "max_abs_err <= rtol*max|ref| + atol, and argmax equal wherever the reference top-2 margin > 2*tol",
            "worst_max_abs_err": self.worst_max_abs_err,
            "min_argmax_agreement": self.min_argmax_agreement,
            "shapes": [s.to_dict() for s in self.shapes],
            "plan": "min, opt, max and an irregular in-range shape" if self.corner_verified else
                    "min, opt, max-batch, max-hw and an irregular in-range shape; " + SEPARATE_AXES,
            "corner_verified": self.corner_verified,
        }


def _input(shape: Shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _compare(ref: np.ndarray, out: np.ndarray, rtol: float, atol: float) -> tuple[float, float, float, float, int]:
    ref64 = ref.astype(np.float64)
    err = float(np.max(np.abs(ref64 - out))) if ref.size else 0.0
    mag = float(np.max(np.abs(ref64))) if ref.size else 0.0
    tol = rtol * mag + atol
    if ref.shape[1] == 1:  # binary map: the decision is the sign
        a, b = ref[:, 0] > 0, out[:, 0] > 0
        agree = float(np.mean(a == b))
        decisive = int(np.sum((a != b) & (np.abs(ref[:, 0]) > 2 * tol)))
        return err, mag, tol, agree, decisive
    ra, oa = ref.argmax(1), out.argmax(1)
    agree = float(np.mean(ra == oa))
    part = np.partition(ref, -2, axis=1)
    margin = part[:, -1] - part[:, -2]
    decisive = int(np.sum((ra != oa) & (margin > 2 * tol)))
    return err, mag, tol, agree, decisive


def _failed(label: str, shape, message: str, torch_s: float = 0.0, ort_s: float = 0.0) -> ShapeCheck:
    nan = float("nan")
    return ShapeCheck(label, shape, False, nan, nan, nan, 0.0, -1, torch_s, ort_s, message)


def _check_finite_reference(ref: np.ndarray, shape) -> None:
    """ModelLoadError when PyTorch's own output is not finite (nothing can be verified against it)."""
    if not np.all(np.isfinite(ref)):
        from segdeploy.errors import ModelLoadError

        bad = int(np.size(ref) - np.count_nonzero(np.isfinite(ref)))
        raise ModelLoadError(
            f"the PyTorch model itself outputs NaN/Inf at {'x'.join(map(str, shape))} ({bad} of {ref.size} values) "
            "for a seeded random input, so no export can be verified against it; fix the model (uninitialised "
            "weights, a division by zero, an overflow)"
        )


def _check_shape(module, sess, label: str, shape, x: torch.Tensor, rtol: float, atol: float) -> ShapeCheck:
    """PyTorch vs ONNX Runtime at one shape (a failure of either, a shape or NaN mismatch, or the comparison)."""
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            ref = module(x).float().numpy()
    except Exception as e:
        return _failed(label, shape, f"PyTorch failed: {str(e).splitlines()[0][:200]}")
    t1 = time.perf_counter()
    _check_finite_reference(ref, shape)
    try:
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    except Exception as e:
        return _failed(label, shape, f"ONNX Runtime failed: {str(e).splitlines()[0][:200]}", t1 - t0)
    t2 = time.perf_counter()
    if out.shape != ref.shape:
        return _failed(label, shape, f"output shape {list(out.shape)} differs from PyTorch's {list(ref.shape)}",
                       t1 - t0, t2 - t1)
    if not np.all(np.isfinite(out)):
        return _failed(label, shape, "ONNX output contains NaN/Inf where PyTorch's is finite", t1 - t0, t2 - t1)
    err, mag, tol, agree, decisive = _compare(ref, out, rtol, atol)
    ok = err <= tol and decisive == 0
    return ShapeCheck(label, shape, ok, err, mag, tol, agree, decisive, t1 - t0, t2 - t1,
                      None if ok else f"max abs error {err:.3g} > tolerance {tol:.3g}" if err > tol
                      else f"{decisive} pixels change class")


def verify_onnx(
    module,
    onnx_bytes: bytes,
    profile: ShapeProfile,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    progress: Progress | Callable[[str], None] | None = None,
) -> VerificationReport:
    """Compare ``module`` and the ONNX model at the shapes of :func:`verification_plan` (see module docstring).
    ``progress``: a :class:`~segdeploy.progress.Progress` (or any ``Callable[[str], None]``): a line per shape and
    a counted task over the shapes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4  # a failing shape raises with the same text, reported per shape; no [E:onnxruntime] lines
    so.enable_cpu_mem_arena = False  # each shape's buffers are returned, not kept for the largest shape's size
    plan = verification_plan(profile)
    report = VerificationReport(rtol=rtol, atol=atol, corner_verified=corner_verified(profile))
    try:
        sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise VerificationError(f"ONNX Runtime cannot load the exported graph: {str(e).splitlines()[0]}") from None
    say = as_progress(progress)
    with say.task("verify", total=len(plan), unit="shape") as task:
        for i, (label, shape) in enumerate(plan):
            say(f"verify {label} {'x'.join(map(str, shape))} ({i + 1}/{len(plan)})")
            report.shapes.append(_check_shape(module, sess, label, shape, _input(shape, seed + i), rtol, atol))
            task.advance()
    if report.passed and not report.corner_verified:  # a failure is reported by the caller, not as "verified"
        say(f"verified {len(plan)} shapes; the max corner {'x'.join(map(str, profile.max))} was not run: {SEPARATE_AXES}")
    return report


def failure_message(report: VerificationReport, exporter: str) -> str | None:
    """One line naming the first failing shape and its error, or None when every shape passed."""
    for s in report.shapes:
        if not s.passed:
            return f"{exporter} export disagrees with PyTorch at {s.label} shape {'x'.join(map(str, s.shape))}: {s.error}"
    return None
