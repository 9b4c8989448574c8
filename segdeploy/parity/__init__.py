"""Parity checker: does the deployed model (ONNX Runtime / TensorRT) segment like its PyTorch reference?

Modules (one job each):
  metrics      exact int64 confusion matrices and the metrics reduced from them
  check        the dataset loop: reference + candidate runners, labelled / unlabelled mode, worst images
  gate         the release gate (mIoU drop, agreement, per-class floor) -> GateError (exit 3)
  report_json  the versioned JSON report schema (docs/parity_report.md), read/write/validate
  terminal     the terminal table
  shard        --shard I/N partial results and the exact merge
  cli          `segdeploy check` and `segdeploy merge`

Python API: :func:`segdeploy.parity.check.run_check`.
"""
