"""The default range method's per-tensor rule: entropy, unless entropy would clip a long tail.

Contract
--------
The default method (``auto``, :data:`segdeploy.vocab.DEFAULT_CALIB_METHOD`) chooses per tensor from the
statistics already collected (one |x| histogram per tensor; nothing is run again):

1. ``amax_entropy`` -- TensorRT's KL threshold (:mod:`segdeploy.calibration.methods`);
2. the **tail share** -- the share of the tensor's values above that threshold, i.e. the values entropy clips
   (:func:`tail_share`, from the histogram's bins above the threshold's bin edge);
3. if the tail share is above :data:`TAIL_SHARE_LIMIT` (0.01 %, what ``percentile`` 99.99 gives up at most),
   the tensor is *long-tailed* for KL and gets ``percentile`` (99.99 by default) instead; otherwise entropy.

Why: KL fits the bulk of a distribution and treats a sparse tail as noise. For ReLU/Gaussian-like activations
it clips nothing or a few values in a million (measured: Gaussian 0, ReLU(Gaussian) 2e-6); for GELU outputs,
softmax-like and outlier-feature tensors (transformers' Mix-FFN second linear, attention) it clips 6e-4 to
8e-4 of the values, and those values carry the signal (issue 19: entropy lost 2.08 mIoU points on a trained
SegFormer where percentile 99.99 lost 0.13). :func:`choose` returns the chosen kind so the choice is
recorded per tensor (``ranges.json`` meta ``per_tensor_method``, manifest ``calibration.method.chosen``).
"""

from __future__ import annotations

import numpy as np

from segdeploy.vocab import CalibMethod

TAIL_SHARE_LIMIT = 1e-4  # a tensor whose entropy threshold clips more than this share of its values is long-tailed


def tail_share(hist: np.ndarray, edges: np.ndarray, amax: float) -> float:
    """Share of the histogram's values in bins that start at or above ``amax`` (the values a range of
    ``[-amax, amax]`` clips, to the bin); 0.0 for an empty histogram."""
    total = float(hist.sum())
    if total <= 0.0:
        return 0.0
    first_clipped = int(np.searchsorted(edges[:-1], amax, side="left"))
    return float(hist[first_clipped:].sum()) / total


def is_long_tailed(hist: np.ndarray, edges: np.ndarray, entropy_amax: float, limit: float = TAIL_SHARE_LIMIT) -> bool:
    """The rule: entropy's threshold ``entropy_amax`` clips more than ``limit`` of the values."""
    return tail_share(hist, edges, entropy_amax) > limit


def choose(hist: np.ndarray, edges: np.ndarray, entropy_amax: float, percentile_amax: float) -> tuple[float, str]:
    """(amax, method kind) of the default method for one tensor, given both candidate thresholds."""
    if is_long_tailed(hist, edges, entropy_amax):
        return percentile_amax, CalibMethod.PERCENTILE.value
    return entropy_amax, CalibMethod.ENTROPY.value


RULE = (f"entropy per tensor; percentile where entropy would clip more than {TAIL_SHARE_LIMIT:.2%} of the "
        "tensor's values (long tail)")
