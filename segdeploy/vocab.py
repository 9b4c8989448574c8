"""segdeploy's vocabulary: every name, enum and small table that more than one module needs, defined once.

Contract
--------
* Everything here is a constant, an enum whose members *are* their string values (``Precision.INT8 == "int8"``,
  usable as dict keys, in JSON and in messages: ``f"{Precision.INT8}"`` is ``int8``), or a pure function of
  them. Nothing here does I/O or imports anything heavier than the standard library.
* Other modules import these names; they never re-spell them. ``tests/test_structure.py`` scans the package
  for stray literals of the artifact file names and for manifest keys read outside the owner.
* The TensorRT target table is the one exception kept in its own module, :mod:`segdeploy.trt.versions`
  (it is a table with a dozen fields per line); everything else that names a TensorRT line imports it from there.

Contents
--------
* :class:`Precision` and the artifact names that follow from it (ONNX file, engine file, trtexec plan file,
  file kind): ``Precision.INT8.onnx_file == "model.int8.onnx"``.
* Artifact names of the export directory: :data:`MANIFEST`, :data:`MODEL_ONNX`, :data:`TRT_ONNX`,
  :data:`FP16_ONNX`, :data:`INT8_ONNX`, :data:`RANGES`, :data:`CALIB_CACHE`; :class:`FileKind`.
* The exported graph's tensor names: :data:`INPUT_NAME`, :data:`OUTPUT_NAME`; the end-to-end variants':
  :data:`E2E_INPUT_NAME`, :data:`CLASS_MAP_NAME`, :data:`E2E_SCORES_NAME` (files :data:`E2E_ONNX`,
  :data:`FP16_E2E_ONNX`, :data:`INT8_E2E_ONNX`, ``Precision.e2e_file``).
* :class:`CalibMethod` (range methods) and :data:`DEFAULT_CALIB_METHOD`.
* :class:`OrtLevel` (ONNX Runtime graph optimisation levels) with ``ort_name`` (``ORT_DISABLE_ALL`` ...),
  :data:`GATED_ORT_LEVEL` and :data:`PRECISION_CHECK_LEVELS`.
* The dataset split layout: :data:`IMAGES_DIR`, :data:`MASKS_DIR`, :data:`CALIB_ROOT`, :data:`CALIB_SPLIT`, :data:`VAL_SPLIT` and
  :func:`split_dirs`.
* The INT8 placement's ONNX op sets (TensorRT's explicit-quantization rules): :data:`QDQ_WEIGHTED_OPS`,
  :data:`QDQ_POOL_OPS`, :data:`QDQ_RESIDUAL_OP`, :data:`QDQ_UNTOUCHED_OPS` and their union of ops whose inputs
  may carry Q/DQ, :data:`QUANTIZABLE_OPS` (the placer in :mod:`segdeploy.precision.qdq` and calibration's
  ``quantizable_inputs`` read the same sets).
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path


class Name(str, enum.Enum):
    """An enum whose members are their string values everywhere: ``==``, hashing, JSON, ``str()`` and f-strings."""

    __str__ = str.__str__
    __format__ = str.__format__

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The string values, in definition order (for ``click.Choice`` and messages)."""
        return tuple(m.value for m in cls)

    @classmethod
    def parse(cls, text: str, option: str) -> "Name":
        """``text`` as a member; UsageError naming ``option`` and the valid values otherwise."""
        try:
            return cls(str(text).strip())
        except ValueError:
            from segdeploy.errors import UsageError

            raise UsageError(f"unknown {option} {text!r}; use one of {', '.join(cls.values())}") from None


# ----------------------------------------------------------------------------------- INT8 placement (ONNX op types)

QDQ_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})  # Q/DQ on the activation and the weight
QDQ_POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})  # Q/DQ on the input
QDQ_RESIDUAL_OP = "Add"  # Q/DQ on the skip branch of an Add fed by a Conv (TensorRT fuses the conv with the add)
# ops whose inputs never carry Q/DQ (TensorRT rules + our policy): they run in the graph's float precision
QDQ_UNTOUCHED_OPS = frozenset({"Resize", "Upsample", "Softmax", "LogSoftmax", "ArgMax", "ArgMin", "Concat",
                               "BatchNormalization", "InstanceNormalization", "LayerNormalization",
                               "GroupNormalization"})
QUANTIZABLE_OPS = tuple(sorted(QDQ_WEIGHTED_OPS | QDQ_POOL_OPS | {QDQ_RESIDUAL_OP}))  # inputs may carry Q/DQ


# ----------------------------------------------------------------------------------- artifact names

MANIFEST = "manifest.json"
MODEL_ONNX = "model.onnx"
TRT_ONNX = "model.trt.onnx"  # model.onnx with TensorRT plugin nodes (SegNet's pool/unpool, RoiAlign)
FP16_ONNX = "model.fp16.onnx"
INT8_ONNX = "model.int8.onnx"
RANGES = "ranges.json"
CALIB_CACHE = "model.calib.cache"
# end-to-end variants (uint8 NHWC frame in, class map out; segdeploy.export.e2e), one per ONNX precision
E2E_ONNX = "model.e2e.onnx"
FP16_E2E_ONNX = "model.fp16.e2e.onnx"
INT8_E2E_ONNX = "model.int8.e2e.onnx"


# Every name the manifest's file table may list: model[.<tag>...].onnx|.engine, ranges.json, model.calib.cache.
ARTIFACT_NAME = re.compile(r"model(\.[A-Za-z0-9_-]+)*\.(onnx|engine)|" + re.escape(RANGES) + "|" + re.escape(CALIB_CACHE))


def is_artifact_name(name: object) -> bool:
    """True for a name the file table may list (see :data:`ARTIFACT_NAME`): no NUL, ``/``, ``.`` or ``..``."""
    return isinstance(name, str) and ARTIFACT_NAME.fullmatch(name) is not None


class FileKind(Name):
    """The ``kind`` of a row of the manifest's file table."""

    ONNX = "onnx"
    ONNX_TRT = "onnx-trt"
    ONNX_INT8 = "onnx-int8"
    ONNX_FP16 = "onnx-fp16"
    ONNX_E2E = "onnx-e2e"  # an end-to-end variant (segdeploy.export.e2e)
    RANGES = "ranges"
    CALIB_CACHE = "calib-cache"
    ENGINE = "engine"


class Precision(Name):
    """What an engine (or a lowered ONNX) computes in. ``int8-implicit`` is the FP32 ONNX + the calibration
    cache (TensorRT 8.6/10.x's calibrator path, removed in 11)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT8_IMPLICIT = "int8-implicit"

    @classmethod
    def parse_list(cls, text: str | None, option: str = "--precision") -> tuple["Precision", ...] | None:
        """``'fp32,int8'`` -> (FP32, INT8), duplicates dropped, order kept; None or blank -> None (the caller's
        default). UsageError naming ``option`` for an unknown name."""
        if text is None or not str(text).strip():
            return None
        out: list[Precision] = []
        for item in str(text).split(","):
            p = cls.parse(item.strip().lower(), option)
            if p not in out:
                out.append(p)
        return tuple(out)

    @property
    def onnx_file(self) -> str:
        """The ONNX file TensorRT parses for this precision (the FP32 graph for fp32 and int8-implicit)."""
        return {"fp16": FP16_ONNX, "int8": INT8_ONNX}.get(self.value, MODEL_ONNX)

    @property
    def onnx_kind(self) -> FileKind:
        return {"fp16": FileKind.ONNX_FP16, "int8": FileKind.ONNX_INT8}.get(self.value, FileKind.ONNX)

    @property
    def e2e_file(self) -> str:
        """The end-to-end variant of :attr:`onnx_file` (uint8 NHWC frame in, class map out; int8-implicit: the FP32
        graph's, built with the calibration cache)."""
        return {"fp16": FP16_E2E_ONNX, "int8": INT8_E2E_ONNX}.get(self.value, E2E_ONNX)

    @property
    def deepstream_file(self) -> str:
        """The DeepStream variant of :attr:`onnx_file` a bundle ships (``segdeploy.bundle.deepstream``)."""
        return {"fp16": "model.fp16.deepstream.onnx", "int8": "model.int8.deepstream.onnx"}.get(
            self.value, "model.deepstream.onnx")

    @property
    def engine_file(self) -> str:
        """segdeploy's own engine for this precision, listed in the manifest."""
        return f"model.{self.value}.engine"

    @property
    def plan_file(self) -> str:
        """What the printed trtexec commands save: not ``.engine``, so a hand-built plan is never taken for one of
        segdeploy's listed engines (nor removed by a later run)."""
        return f"model.{self.value}.plan"


LOWERED_PRECISIONS = (Precision.FP16, Precision.INT8)  # written as ONNX files by the precision stage
ONNX_PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8)  # precisions with an ONNX file of their own

# ----------------------------------------------------------------------------------- graph tensor names

INPUT_NAME = "input"  # [batch, C, height, width] float32
OUTPUT_NAME = "logits"  # [batch, K, height, width] float32
# the end-to-end variants' tensors (segdeploy.export.e2e)
E2E_INPUT_NAME = "image"  # [batch, height, width, 3] uint8, channels in the variant's channel order
CLASS_MAP_NAME = "classes"  # [batch, height, width] uint8 (K <= 256) or int32
E2E_SCORES_NAME = "scores"  # optional [batch, K, height, width] float32, cropped to the frame

# ----------------------------------------------------------------------------------- calibration


class CalibMethod(Name):
    """How a tensor's INT8 range is chosen from its statistics (see :mod:`segdeploy.calibration.methods`)."""

    MAX = "max"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"
    AUTO = "auto"  # the default: entropy per tensor, percentile where entropy clips a long tail (calibration/tail_rule.py)

    @property
    def needs_histogram(self) -> bool:
        """``max`` needs only the running max of |x|; the others search a histogram."""
        return self is not CalibMethod.MAX


DEFAULT_CALIB_METHOD = CalibMethod.AUTO
DEFAULT_PERCENTILE = 99.99

# ----------------------------------------------------------------------------------- ONNX Runtime


class OrtLevel(Name):
    """ONNX Runtime graph optimisation levels. ``disable`` emulates Q/DQ node by node in float (the faithful
    reference for TensorRT); ``all`` fuses DQ->op->Q into int8 kernels where a Q follows the op (CPU deployment)."""

    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"

    @property
    def ort_name(self) -> str:
        """``ORT_DISABLE_ALL`` ... ``ORT_ENABLE_ALL``, the name of ``onnxruntime.GraphOptimizationLevel``'s member."""
        return "ORT_DISABLE_ALL" if self is OrtLevel.DISABLE else f"ORT_ENABLE_{self.value.upper()}"


GATED_ORT_LEVEL = OrtLevel.DISABLE  # the precision gate's level
PRECISION_CHECK_LEVELS = (OrtLevel.DISABLE, OrtLevel.ALL)  # levels the precision stage measures
DEFAULT_CHECK_ORT_LEVEL = OrtLevel.ALL  # `segdeploy check`'s candidate session

# ----------------------------------------------------------------------------------- dataset layout

IMAGES_DIR = "images"
MASKS_DIR = "masks"
CALIB_SPLIT = "calib"  # calibration/<set>/calib
VAL_SPLIT = "val"  # calibration/<set>/val/{images,masks}
CALIB_ROOT = "calibration"  # the default --calib folder, ./calibration/ (segdeploy.datasets.convention)


def split_dirs(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """A split directory -> (its images, its masks or None): ``DIR/images`` + ``DIR/masks`` when they exist,
    else ``DIR`` itself holds the images and there are no masks."""
    p = Path(path)
    images = p / IMAGES_DIR if (p / IMAGES_DIR).is_dir() else p
    masks = p / MASKS_DIR if (p / MASKS_DIR).is_dir() else None
    return images, masks


__all__ = [
    "ARTIFACT_NAME", "CALIB_CACHE", "CALIB_ROOT", "CALIB_SPLIT", "CLASS_MAP_NAME", "CalibMethod", "DEFAULT_CALIB_METHOD", "DEFAULT_CHECK_ORT_LEVEL",
    "DEFAULT_PERCENTILE", "E2E_INPUT_NAME", "E2E_ONNX", "E2E_SCORES_NAME", "FP16_E2E_ONNX", "FP16_ONNX", "INT8_E2E_ONNX", "FileKind", "GATED_ORT_LEVEL", "IMAGES_DIR", "INPUT_NAME", "INT8_ONNX", "LOWERED_PRECISIONS", "MANIFEST",
    "MASKS_DIR", "MODEL_ONNX", "Name", "ONNX_PRECISIONS", "OUTPUT_NAME", "OrtLevel", "PRECISION_CHECK_LEVELS", "Precision",
    "RANGES", "TRT_ONNX", "VAL_SPLIT", "is_artifact_name", "split_dirs",
]
