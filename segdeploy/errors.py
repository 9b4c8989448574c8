"""One exception family for everything segdeploy reports to a user.

Contract: every error a user can cause raises a :class:`SegdeployError` subclass whose message is
one line saying what failed, what was expected and how to fix it. The CLI prints ``error: <message>``
without a traceback and exits with the class's ``exit_code``.

Exit codes (documented in the README):
    0  success
    1  error (bad input, failed stage, failed verification)
    2  usage error (bad option values, impossible option combinations)
    3  accuracy gate tripped (drift larger than the budget)
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_GATE = 3


class SegdeployError(Exception):
    """Base class: a user-facing, one-line error, with the evidence that decided it.

    Declared evidence (empty unless a stage fills it; the CLI prints it and puts it in the JSON document):

    * ``stages`` -- stage name -> that stage's ``summary()`` (or what it measured) before the error stopped the
      run, e.g. the precision section whose accuracy tripped the gate;
    * ``kept_out`` -- the budget search's best attempt (layers kept in float), when the budget was not met;
    * ``engines`` -- the engines' manifest entries with their parity records, when the engine gate tripped;
    * ``logs`` -- precision -> TensorRT's captured build log, when a build failed;
    * ``reported`` -- the command already printed its JSON document for this error (the entry point must not
      print a second one).
    """

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, stages: dict[str, Any] | None = None, kept_out: list[Any] | None = None,
                 engines: list[dict[str, Any]] | None = None, logs: dict[str, str] | None = None):
        # Keep the message on one line: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))
        self.stages: dict[str, Any] = dict(stages or {})
        self.kept_out: list[Any] = list(kept_out or ())
        self.engines: list[dict[str, Any]] = list(engines or ())
        self.logs: dict[str, str] = dict(logs or {})
        self.reported = False

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(SegdeployError):
    """Option values that cannot work together or cannot be parsed (exit 2)."""

    exit_code = EXIT_USAGE


class ModelLoadError(SegdeployError):
    """The model file/factory cannot be loaded, or its outputs are not a segmentation map."""


class UntrustedPickleError(ModelLoadError):
    """A pickled module was given without ``--trust-pickle``."""


class ShapeError(SegdeployError):
    """An impossible shape profile, or an input the model does not accept."""

    exit_code = EXIT_USAGE


class ExportError(SegdeployError):
    """No exporter produced an ONNX graph."""


class VerificationError(SegdeployError):
    """An exported graph disagrees with PyTorch."""


class DataError(SegdeployError):
    """A dataset, image or mask is missing, unreadable or inconsistent."""


class ArtifactError(SegdeployError):
    """An artifact (ONNX, manifest, cache) is missing, corrupt or cannot be written."""


class GateError(SegdeployError):
    """An accuracy gate tripped: the drift exceeds the budget (exit 3)."""

    exit_code = EXIT_GATE


class MissingDependencyError(SegdeployError):
    """An optional dependency (tensorrt, onnxruntime-gpu, ...) is not installed."""
