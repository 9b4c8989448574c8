"""The end-to-end stage's terminal summary (``segdeploy export/precision ... --end-to-end``).

Contract
--------
:func:`print_e2e_summary` ``(result)`` prints, from an :class:`~segdeploy.export.e2e_stage.E2EResult`: the frame
input and the class map's type (``auto`` resolved, so the default is visible), one line per variant with its
verification (minimum agreement with the source ONNX and with PyTorch over the verification frames), and the bytes
copied in/out per frame at the profile's opt size against the plain model. It reads the result's ``section`` (the
manifest's ``end_to_end`` section the stage wrote) through the result, never the directory.
"""

from __future__ import annotations

from typing import Any

import click


def _pct(v: float | None) -> str:
    return "not compared" if v is None else f"{100.0 * v:.2f}%"


def print_e2e_summary(res: Any) -> None:
    """The variants, their agreement and the per-frame copy volume (see the module docstring)."""
    w = click.echo
    s = res.summary()
    inp, out = s["input"], s["outputs"][0]
    w(f"end-to-end    {inp['dtype']} {inp['layout']} {inp['channel_order']} frame in -> {out['dtype']} class map out"
      f"{' + scores' if len(s['outputs']) > 1 else ''} ({s['seconds']:.1f}s)")
    w(f"    {'variant':<24}{'vs source ONNX':>16}{'vs PyTorch':>14}  result")
    for p, v in s["verification"].items():
        w(f"    {s['files'][p]:<24}{_pct(v['min_agreement_vs_source']):>16}{_pct(v['min_agreement_vs_torch']):>14}  "
          f"{'ok' if v['passed'] else 'FAIL'}")
    io = s["io_bytes_per_frame"]
    plain, e2e = io["plain"], io["end_to_end"]
    w(f"    bytes per {io['frame'][0]}x{io['frame'][1]} frame: plain in {plain['in']:,} + out {plain['out']:,}; "
      f"end-to-end in {e2e['in']:,} + out {e2e['out']:,} ({io['ratio']}x less)")
    for n in s["notes"]:
        w(f"note: {n}")
