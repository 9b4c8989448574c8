"""Export rescue: a graph right at the trace size but wrong (or failing) at other sizes of the profile.

Tracing runs the model once, at the opt shape; Python arithmetic on sizes (a Swin block's window padding,
its patch merging's odd-size padding, a window shrunk to a small feature map, a Mask2Former-style head's
size-dependent branches) is baked into the graph as constants of that size. Such a graph verifies at opt
and fails elsewhere. The rescue looks for the most dynamic profile at which the graph is exact:

1. spatial multiples the architecture implies: the powers of two above the probed multiple, up to
   ``patch x window x 2^merges`` read from the module (``patch_size``/``window_size`` attributes, patch
   merging layers) or 64, and that product itself (Swin-T: 4 x 7 x 2^3 = 224). Only multiples that divide
   the opt H/W are candidates (``--shape`` is never rounded). Sizes that are multiples of a larger power of
   two are a subset of a smaller one's, so the powers are bisected (largest first); the product is tried
   when no smaller power verified. A multiple must also verify at an odd multiple of itself (a size the
   profile's min/opt/max may all miss);
2. static H/W at the opt size (batch stays dynamic), as for models that only accept square inputs.

Each candidate is re-exported and verified exactly (the callback does it: the caller's exporter loop and
:func:`~segdeploy.export.verify.verify_onnx`), and the first kind that verifies is kept.

Contract: :func:`rescue_applies` says whether a failed export is this case (some exporter's graph
verified at opt, another shape of a dynamic-H/W profile failed). :func:`rescue` searches and returns a
:class:`Rescue` (the verified result and the profile) after recording the decision on the
:class:`~segdeploy.export.prepare.Prepared` (``profile``, ``narrowed`` / ``static_axes``, the spec's
multiple) and saying it in one line. Where the user fixed the profile (``--spatial-multiple``,
``--min-shape``, ``--max-shape``) nothing is adopted: it raises VerificationError naming the cause and the
option that verified. Where nothing verifies, VerificationError names the cause and what was tried.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from segdeploy.errors import VerificationError
from segdeploy.export.verify import VerificationReport, verify_onnx
from segdeploy.progress import Progress
from segdeploy.spec import ShapeProfile

NO_WINDOW_LIMIT = 64  # the largest multiple tried for a model that declares no window (the probe's largest)
OPT_LABEL = "opt"


@dataclass(frozen=True)
class ArchitectureHint:
    """What the module says about the spatial multiple its trace needs."""

    implied: int | None  # patch x window x 2^merges, when the module declares a window
    why: str  # e.g. "patch 4 x window 7 x 2^3 patch merges = 224"

    @property
    def limit(self) -> int:
        """The largest power of two worth trying."""
        return max(self.implied or 0, NO_WINDOW_LIMIT)


@dataclass
class Rescue:
    """A verified export at a rescued profile: ``outcome`` is the caller's (its exporter loop's) result."""

    profile: ShapeProfile
    outcome: Any
    summary: str


# (profile) -> the caller's verified export there (with the graph's bytes as ``.data``) or None
ExportAndVerify = Callable[[ShapeProfile], Any]


def _largest_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return max(value) if max(value) > 0 else None
    return None


def architecture_hint(module: nn.Module) -> ArchitectureHint:
    """The largest multiple the module implies: patch x window x 2^(patch-merging layers) (see module doc)."""
    patch = window = None
    merges = 0
    for mod in module.modules():
        attrs = vars(mod)
        p, w = _largest_int(attrs.get("patch_size")), _largest_int(attrs.get("window_size"))
        patch = max(patch or 0, p or 0) or patch
        window = max(window or 0, w or 0) or window
        merges += type(mod).__name__.endswith("PatchMerging")
    if window is None:
        return ArchitectureHint(None, "the model declares no window size")
    implied = (patch or 1) * window * 2 ** merges
    return ArchitectureHint(implied, f"patch {patch or 1} x window {window} x 2^{merges} patch merges = {implied}")


def candidate_multiples(probed: int, opt_hw: Sequence[int], limit: int) -> list[int]:
    """Powers of two above ``probed`` (and multiples of it) up to ``limit`` that divide the opt H/W, ascending."""
    powers = [2 ** k for k in range(1, limit.bit_length()) if 2 ** k <= limit]
    return [m for m in powers if m > probed and m % probed == 0 and all(v % m == 0 for v in opt_hw)]


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def profile_at_multiple(base: ShapeProfile, m: int) -> ShapeProfile | None:
    """``base`` narrowed to H/W multiples of ``m`` (inside its range, opt kept); None when H/W would be static."""
    lo = [min(_round_up(base.min[a], m), base.opt[a]) for a in (2, 3)]
    hi = [max(base.max[a] // m * m, base.opt[a]) for a in (2, 3)]
    if lo == list(base.opt[2:]) and hi == list(base.opt[2:]):
        return None
    return ShapeProfile(base.min[:2] + tuple(lo), base.opt, base.max[:2] + tuple(hi), m)


def static_profile(base: ShapeProfile) -> ShapeProfile:
    """``base`` with H/W fixed at the opt size (batch unchanged)."""
    return ShapeProfile(base.min[:2] + base.opt[2:], base.opt, base.max[:2] + base.opt[2:], base.spatial_multiple)


def _first_failure(report: VerificationReport):
    return next((s for s in report.shapes if not s.passed), None)


def rescue_applies(profile: ShapeProfile, reports: Sequence[VerificationReport | None]) -> VerificationReport | None:
    """The report of a graph right at opt but failing at another shape (H/W dynamic), else None."""
    if "height" not in profile.dynamic_axes and "width" not in profile.dynamic_axes:
        return None
    for r in reports:
        if r is None or not r.shapes:
            continue
        opt_ok = any(s.label == OPT_LABEL and s.passed for s in r.shapes)
        if opt_ok and _first_failure(r) is not None:
            return r
    return None


def _hw(shape) -> str:
    return f"{shape[2]}x{shape[3]}"


def _ort_where(error: str) -> str:
    """The failing node of an ONNX Runtime error ("Concat node /a/b/Concat_1"), else the error's head."""
    m = re.search(r"running (\w+) node\. Name:'([^']+)'", error)
    return f"{m.group(1)} node {m.group(2)}" if m else error[:120]


def failure_cause(report: VerificationReport, profile: ShapeProfile) -> str:
    """One clause: the graph traced at opt fails (ORT) or is wrong (values) at the first failing shape."""
    bad = _first_failure(report)
    trace = _hw(profile.opt)
    if bad.error and bad.error.startswith("ONNX Runtime failed"):
        return (f"the graph traced at {trace} fails at {_hw(bad.shape)} in ONNX Runtime ({_ort_where(bad.error)}): "
                "it bakes in size-dependent values of the trace size (e.g. a window's padding)")
    return (f"the graph traced at {trace} is wrong at {_hw(bad.shape)} ({bad.error}) though exact at {trace}: "
            "size-dependent code was baked in at the trace size")


def odd_multiple_shape(profile: ShapeProfile) -> tuple[int, int, int, int] | None:
    """A batch-1 shape whose H and W are odd multiples of the profile's multiple (different from each other where
    possible, in range): it fails where the graph needs a coarser multiple, which min/opt/max may all hide."""
    m = profile.spatial_multiple

    def odd(axis: int, skip: int | None) -> int | None:
        ks = [k for k in range(-(-profile.min[axis] // m), profile.max[axis] // m + 1) if k % 2 == 1]
        picks = [k * m for k in ks if k * m not in (profile.opt[axis], skip)] or [k * m for k in ks]
        return picks[0] if picks else None

    h = odd(2, None)
    w = odd(3, h)
    if h is None or w is None or (h, w) == tuple(profile.opt[2:]):
        return None
    return (1, profile.channels, h, w)


def _verifies(prep, profile: ShapeProfile, try_profile: ExportAndVerify, tol: tuple[float, float],
              say: Progress) -> Any | None:
    """The export at ``profile`` if it verifies there and at an odd multiple of its spatial multiple, else None."""
    outcome = try_profile(profile)
    shape = odd_multiple_shape(profile) if outcome is not None else None
    if shape is None:
        return outcome
    one = ShapeProfile(shape, shape, shape, profile.spatial_multiple)
    report = verify_onnx(prep.loaded.module, outcome.data, one, tol[0], tol[1])
    if report.passed:
        return outcome
    say(f"export rescue: multiple {profile.spatial_multiple} fails at the odd multiple {_hw(shape)} "
        f"({_first_failure(report).error})")
    return None


def _search_multiples(prep, profiles: list[tuple[int, ShapeProfile]], implied: int | None,
                      try_profile: ExportAndVerify, tol: tuple[float, float], say: Progress):
    """(profile, outcome) at the smallest multiple that verifies, or None. Powers of two are bisected (sizes that
    are multiples of a larger one are a subset: "m verifies -> 2m verifies"), largest first; the architecture's
    implied multiple (a Swin's 224) is tried when no smaller power of two verified."""
    powers = [(m, p) for m, p in profiles if m != implied]
    results: dict[int, Any] = {}

    def ok(i: int) -> bool:
        if i not in results:
            results[i] = _verifies(prep, powers[i][1], try_profile, tol, say)
        return results[i] is not None

    best = None
    if powers and ok(len(powers) - 1):
        lo, hi = 0, len(powers) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
        best = (powers[hi][1], results[hi])
    implied_profile = next((p for m, p in profiles if m == implied), None)
    if implied_profile is not None and (best is None or best[0].spatial_multiple > implied):
        outcome = _verifies(prep, implied_profile, try_profile, tol, say)
        if outcome is not None:
            best = (implied_profile, outcome)
    return best


def _shape(s) -> str:
    return "x".join(str(v) for v in s)


def _profile_options(p: ShapeProfile, multiple: bool) -> str:
    lead = f"--spatial-multiple {p.spatial_multiple} " if multiple else ""
    return f"{lead}--min-shape {_shape(p.min)} --max-shape {_shape(p.max)}"


def _adopt_multiple(prep, profile: ShapeProfile, cause: str) -> str:
    """Record a coarser spatial multiple on ``prep`` (profile, narrowed bounds, the spec); the one-line summary."""
    base = prep.profile
    reason = (f"export rescue: {cause}; the graph verifies exactly with H/W multiples of {profile.spatial_multiple} "
              f"(pass --spatial-multiple {profile.spatial_multiple} to skip the search)")
    prep.narrowed.append({"bound": "spatial_multiple", "from": [base.spatial_multiple],
                          "to": [profile.spatial_multiple], "reason": reason})
    for bound, old, new in (("min", base.min, profile.min), ("max", base.max, profile.max)):
        if tuple(old) != tuple(new):
            prep.narrowed.append({"bound": bound, "from": list(old), "to": list(new), "reason": reason})
    spec = dataclasses.replace(prep.probe.spec, spatial_multiple=profile.spatial_multiple)
    prep.probe.spec = prep.loaded.spec = spec
    prep.profile = profile
    return (f"export rescue: spatial multiple {base.spatial_multiple} -> {profile.spatial_multiple} "
            f"(H/W {_hw(profile.min)}..{_hw(profile.max)}) verified")


def _adopt_static(prep, profile: ShapeProfile, cause: str, tried: str) -> str:
    reason = (f"export rescue: {cause}; {tried} did not verify; height and width are exported static at "
              f"{_hw(profile.opt)} (pass --shape to choose the size)")
    prep.static_axes += [{"axis": "height", "reason": reason}, {"axis": "width", "reason": reason}]
    prep.profile = profile
    return f"export rescue: static height/width at {_hw(profile.opt)} verified ({tried} did not)"


def rescue(prep, user_fixed: Sequence[str], failed: VerificationReport, try_profile: ExportAndVerify,
           tol: tuple[float, float], say: Progress) -> Rescue:
    """Search the rescued profiles (see the module doc); adopt the first that verifies, or raise VerificationError.

    ``user_fixed``: the profile options the user gave (nothing is adopted then: the error names what verified);
    ``tol``: (rtol, atol) of the verification."""
    base = prep.profile
    cause = failure_cause(failed, base)
    hint = architecture_hint(prep.loaded.module)
    cands = candidate_multiples(base.spatial_multiple, base.opt[2:], hint.limit)
    if hint.implied and hint.implied not in cands and hint.implied > base.spatial_multiple \
            and all(v % hint.implied == 0 for v in base.opt[2:]):
        cands.append(hint.implied)
    profiles = [(m, p) for m in cands if (p := profile_at_multiple(base, m)) is not None]
    tried = (f"spatial multiples {', '.join(str(m) for m, _ in profiles)}" if profiles
             else f"no coarser spatial multiple (none divides {_hw(base.opt)})")
    say(f"export rescue: {cause}; trying {tried} ({hint.why}; those dividing --shape {_hw(base.opt)}), "
        "then static H/W")
    found = _search_multiples(prep, profiles, hint.implied, try_profile, tol, say)
    if found is not None:
        profile, outcome = found
        if user_fixed:
            raise VerificationError(f"{cause}; pass {_profile_options(profile, True)} (verified) instead of "
                                    f"{'/'.join(user_fixed)}")
        return Rescue(profile, outcome, _adopt_multiple(prep, profile, cause))
    static = static_profile(base)
    outcome = try_profile(static)
    if outcome is None:
        raise VerificationError(f"{cause}; no export verified with {tried} nor with static H/W {_hw(base.opt)}; "
                                "the model's size-dependent Python code needs fixing to export it")
    if user_fixed:
        raise VerificationError(f"{cause}; {tried} did not verify; pass {_profile_options(static, False)} "
                                "(static H/W, verified)")
    return Rescue(static, outcome, _adopt_static(prep, static, cause, tried))
