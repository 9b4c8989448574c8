"""What loading a model must never do: run code from an untrusted file, or download weights.

Contract
--------
* :mod:`.archive` -- :func:`read_pt2_layout` checks a ``.pt2`` archive's central directory (nothing inflated):
  ambiguous layouts and zip bombs are an :class:`ArchiveError` (one clause).
* :mod:`.sinks` -- :func:`restricted_pt2_load`: inside the block, ``torch.export.load`` and ``.module()`` run with
  every place that turns file content into code restricted at PyTorch's own call (:class:`Refused`,
  :class:`UnrestrictableTorch`); the JSON records PyTorch parses are bounded first (:func:`check_json_record`).
* :mod:`.codecheck` -- the allow-list checks of generated Python and SymPy code (:class:`CodeProblem`).
* :mod:`.diagnostics` -- :func:`captured_diagnostics`: PyTorch's warnings and log records, captured.
* :mod:`.factories` -- :func:`no_downloads` (outbound connections refused, Hugging Face offline) and
  :func:`no_process_exit` (``os._exit`` raises :class:`ProcessExit`) around a trusted factory.
* :mod:`.patching` -- the one lock and restore-on-exit patcher the blocks above share (they run one at a time).

Each module's docstring states its part of the contract in full.
"""

from __future__ import annotations

from segdeploy.safety.archive import ArchiveError, ArchiveLayout, read_pt2_layout
from segdeploy.safety.codecheck import CodeProblem, check_generated_python, check_sympy_code
from segdeploy.safety.diagnostics import Diagnostics, captured_diagnostics
from segdeploy.safety.factories import DownloadAttempt, ProcessExit, no_downloads, no_process_exit, offline_refusal
from segdeploy.safety.sinks import (LoadGuard, Refused, UnrestrictableTorch, check_json_record, restricted_pt2_load,
                                    weights_only_complaint)

__all__ = [
    "ArchiveError", "ArchiveLayout", "CodeProblem", "Diagnostics", "DownloadAttempt", "LoadGuard", "ProcessExit",
    "Refused", "UnrestrictableTorch", "captured_diagnostics", "check_generated_python", "check_json_record",
    "check_sympy_code", "no_downloads", "no_process_exit", "offline_refusal", "read_pt2_layout",
    "restricted_pt2_load", "weights_only_complaint",
]
