"""PyTorch -> ONNX export with dynamic shapes, export-friendly rewrites and multi-shape verification.

The export *stage*: :class:`ExportOptions`, :class:`ExportResult`, ``stage.run``; verification in
:mod:`segdeploy.export.verify`; rewrites in :mod:`segdeploy.export.rewrites`. The one-call API that loads a
model and publishes an export directory, :func:`segdeploy.pipeline.export_model`, sits with the pipeline above.
"""

from segdeploy.export.stage import ExportOptions, ExportResult

__all__ = ["ExportOptions", "ExportResult"]
