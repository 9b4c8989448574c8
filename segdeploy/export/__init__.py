"""PyTorch -> ONNX export with dynamic shapes, export-friendly rewrites and multi-shape verification.

Public API: :func:`export_model`, :class:`ExportOptions`, :class:`ExportResult`; verification in
:mod:`segdeploy.export.verify`; rewrites in :mod:`segdeploy.export.rewrites`.
"""

from segdeploy.export.stage import ExportOptions, ExportResult, export_model

__all__ = ["ExportOptions", "ExportResult", "export_model"]
