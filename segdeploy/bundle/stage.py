"""Make a device bundle from an export directory.

Contract
--------
``make_bundle(export_dir, out, BundleOptions(...), progress) -> BundleResult`` writes a self-contained directory
(and ``<out>.tar.gz`` beside it) holding:

* ``model/`` -- the export's files exactly as its manifest lists them (sha256-checked while copying), except
  engines, which only run on the GPU they were built on (their entries are dropped from the bundle's manifest,
  so ``model/`` is itself a valid export directory for ``segdeploy build`` on the device);
* ``calib/model.calib.cache`` -- when the export has one, with the header of the bundle's target TensorRT
  (``--trt-target``, :func:`segdeploy.bundle.targets.trt_target_for`; kept as it is for a range such as 10.x).
  build.sh re-stamps it for the TensorRT it finds (``trt_code``: shell arithmetic, held equal to
  :func:`segdeploy.trt.versions.trt_version_code` by a test) into ``build/model.calib.cache``, which implicit INT8
  reads on TensorRT 8.6/10.x;
* ``plugins/`` -- segdeploy's plugin sources + CMake project, only when the model needs them;
* ``runtime/`` -- the C++ runtime (``segdeploy::Segmenter`` + ``segdeploy_infer``), built on the device;
* ``samples/images/`` + ``samples/reference/`` -- sample images and their reference class maps (the FP32 ONNX
  on ONNX Runtime with the manifest's preprocessing, which the export verified against PyTorch), 8-bit PNG;
* ``deepstream/`` -- with ``--deepstream`` (:func:`_stage_deepstream`): ``config_infer_primary_segdeploy.txt`` for
  nvinfer, the DeepStream variant of the first of int8, fp16, fp32 the bundle builds (plugin models: fp32) and
  ``labels.txt`` (:func:`segdeploy.bundle.deepstream.write_files`); nvinfer's formula + the variant is checked
  against the manifest's preprocessing + the model on the sample images, and a class agreement below
  :data:`DEEPSTREAM_MIN_AGREEMENT` publishes nothing (VerificationError); the result is bundle.json's ``deepstream``;
* ``tools/detect_trt.sh``, ``build.sh`` (plugins -> engines (``segdeploy build`` where Python has segdeploy and
  TensorRT, else the trtexec command for the detected TensorRT line: the recipe of that line rendered by
  :mod:`segdeploy.trt.trtexec`, the cache header stamped at run time) -> runner -> smoke test against
  the reference maps with per-precision thresholds), ``README.md``, ``bundle.json`` (every file's sha256, the
  thresholds, the trtexec commands per TensorRT line, notes).

``--target triton`` makes no device bundle: ``out`` receives the Triton model repository instead
(:func:`segdeploy.bundle.triton.write_repository`: the onnxruntime model serves fp32, the end-to-end variant when the
export has one; the tensorrt_plan model the first of int8, fp16, fp32 the bundle names) and a ``bundle.json`` with
every file's sha256 and the repository's description (key ``triton``); published the same way.

The run: check the options, the export and ``out`` before any work (an existing ``out`` must be an earlier bundle
or empty, and may not be (inside) the export directory: :func:`segdeploy.exportdir.guard_outputs`) -> stage the
files -> render ``build.sh``/``README.md``/``bundle.json`` -> archive -> publish. The directory is published
through the export directory's :class:`~segdeploy.exportdir.StagedDirectory`: a lock refuses a second writer, an
interrupted publish is recovered, the files are staged in a marked sibling, swapped in in one step. Every file
operation goes through :mod:`segdeploy.safefs`: the export's files are read without following links and only when
regular (:meth:`~segdeploy.exportdir.ExportDir.copy_without_engines`), a killed run's leftovers are removed only
when they are ours, and the archive is written to a new temporary file (never through a link) renamed into place.
Raises ArtifactError / UsageError / DataError / VerificationError, one line each.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segdeploy import __version__, safefs
from segdeploy.bundle.targets import TRITON, BundleTarget, resolve, trt_target_for
from segdeploy.errors import ArtifactError, DataError, UsageError, VerificationError
from segdeploy.exportdir import ExportDir, StagedDirectory, guard_outputs
from segdeploy.fsutil import sha256_file
from segdeploy.manifest import REEXPORT
from segdeploy.plugins.locate import PLUGIN_LIBRARY
from segdeploy.progress import Progress, as_progress
from segdeploy.trt.versions import Target, line_targets
from segdeploy.vocab import CALIB_CACHE, IMAGES_DIR, MODEL_ONNX, ONNX_PRECISIONS, Precision, split_dirs

SCHEMA = "segdeploy.bundle"
BUNDLE_JSON = "bundle.json"
# smoke-test thresholds (percent of pixels equal to the reference map): FP32 engines may flip a few boundary
# pixels (TF32, other reduction orders); FP16/INT8 get the CPU-measured agreement minus a margin for the
# engine's own FP16 remainder and fusions.
FP32_THRESHOLD = 99.5
MARGIN = 1.0
DEFAULT_THRESHOLD = {Precision.FP16: 97.0, Precision.INT8: 95.0, Precision.INT8_IMPLICIT: 95.0}
TEMPLATES = Path(__file__).parent / "templates"
PACKAGE = Path(__file__).resolve().parents[1]  # segdeploy/: the plugin, runtime and platform sources bundled


@dataclass(frozen=True)
class BundleOptions:
    target: str = "orin"
    trt_target: str | None = None  # the TensorRT the README's commands and calib/ are for (None: trt_target_for)
    precisions: tuple[str, ...] | None = None  # None: every ONNX variant the export holds
    samples: str | None = None  # image folder; None: the validation images the precision stage used
    num_samples: int = 4
    archive: bool = True
    version_compatible: bool = False  # engines built VERSION_COMPATIBLE; the smoke test then runs with --trust-host-code
    deepstream: bool = False  # also deepstream/: the nvinfer configuration, the DeepStream variant, the labels

    def __post_init__(self) -> None:
        device = resolve(self.target)
        if device.key == TRITON and (self.deepstream or self.version_compatible):
            flag = "--deepstream" if self.deepstream else "--version-compatible"
            raise UsageError(f"{flag} applies to a device bundle, not to --target triton (a model repository); leave "
                             f"{flag} out, or use --target orin|thor|x86")
        if device.key == TRITON and Precision.INT8_IMPLICIT in (self.precisions or ()):
            raise UsageError("--target triton serves ONNX models (fp32, fp16, int8), not int8-implicit; leave it out "
                             "of --precision")
        if self.trt_target is not None:
            trt_target_for(device, self.trt_target)  # UsageError: unknown, or not one this device can have
        if self.precisions is not None:
            if not self.precisions:
                raise UsageError(f"--precision is empty: use a comma list of {', '.join(Precision.values())}")
            for p in self.precisions:
                Precision.parse(p, "--precision")
        if self.num_samples < 1:
            raise UsageError(f"--num-samples must be >= 1, got {self.num_samples}")


@dataclass
class BundleResult:
    path: Path
    archive: Path | None
    doc: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        written = self.doc  # bundle.json
        if TRITON in written:
            return {"bundle": str(self.path), "archive": None if self.archive is None else str(self.archive),
                    "target": written["target"], "triton": written[TRITON], "files": len(written["files"]),
                    "notes": list(self.notes)}
        return {"deepstream": written.get("deepstream"), "bundle": str(self.path), "archive": None if self.archive is None else str(self.archive),
                "target": written["target"], "precisions": written["precisions"],
                "files": len(written["files"]), "samples": len(written["samples"]),
                "thresholds": written["smoke_test"]["thresholds"], "notes": list(self.notes)}


def _precisions(ed: ExportDir, options: BundleOptions) -> list[str]:
    variants = ed.onnx_variants()
    if options.precisions is None:
        return [p for p in ONNX_PRECISIONS if p in variants]
    missing = [p for p in options.precisions
               if (p == Precision.INT8_IMPLICIT and not ed.has(CALIB_CACHE)) or (p != Precision.INT8_IMPLICIT and p not in variants)]
    if missing:
        raise UsageError(f"the export holds no {missing[0]} model; run `segdeploy precision` for it first, or leave "
                         f"{missing[0]} out of --precision")
    return list(options.precisions)


def _sample_source(ed: ExportDir, options: BundleOptions) -> Path:
    if options.samples is not None:
        p = Path(options.samples)
        if not p.is_dir():
            raise UsageError(f"--samples {p} is not a directory; pass a folder of sample images")
        return split_dirs(p)[0]
    val = ed.validation_source
    if val:
        p = Path(val)
        p = split_dirs(p)[0]
        if p.is_dir():
            return p
    raise UsageError("no sample images for the smoke test: pass --samples DIR (a few images of the kind the model "
                     "sees; the export recorded no validation split that exists here)")


def _references(ed: ExportDir, images: list[Path], staging: Path, progress: Progress) -> list[dict[str, Any]]:
    """Sample images + reference class maps (FP32 ONNX on ONNX Runtime) into samples/ -> per-sample records."""
    from PIL import Image

    from segdeploy.datasets import Dataset, Entry
    from segdeploy.evaluation import PredictionLoop
    from segdeploy.runners import open_runner

    (staging / "samples" / IMAGES_DIR).mkdir(parents=True)
    (staging / "samples" / "reference").mkdir(parents=True)
    ds = Dataset([Entry(p.stem, str(p)) for p in images], description="bundle samples")
    runner = open_runner(str(ed.file(MODEL_ONNX)), kind="onnxruntime")
    progress.step(f"reference masks for {len(images)} sample image(s) with ONNX Runtime (model.onnx)")
    out = []
    try:
        for pred in PredictionLoop(ds, {"reference": runner}, ed.preprocess, ed.profile, batch_size=1):
            cmap = pred.maps["reference"]
            if (cmap < 0).any():
                raise DataError(f"the FP32 model gives NaN/Inf on sample {pred.stem}; choose other --samples")
            Image.fromarray(pred.sample.image).save(staging / "samples" / IMAGES_DIR / f"{pred.stem}.png")
            Image.fromarray(cmap.astype(np.uint8), mode="L").save(staging / "samples" / "reference" / f"{pred.stem}.png")
            out.append({"stem": pred.stem, "image": f"samples/images/{pred.stem}.png",
                        "reference": f"samples/reference/{pred.stem}.png",
                        "size": [int(cmap.shape[1]), int(cmap.shape[0])]})
    finally:
        runner.close()
    return out


def _thresholds(ed: ExportDir, precisions: list[str]) -> dict[str, float]:
    """Smoke-test thresholds per precision: FP32 fixed; the others from the CPU-measured agreement minus a margin."""
    out: dict[str, float] = {}
    for p in precisions:
        if p == Precision.FP32:
            out[p] = FP32_THRESHOLD
            continue
        agree = ed.gated_agreement(p)
        out[p] = round(max(90.0, 100.0 * agree - MARGIN), 2) if agree is not None else DEFAULT_THRESHOLD[p]
    return out


def _trtexec_cases(ed: ExportDir, precisions: list[str], target: BundleTarget,
                   version_compatible: bool = False) -> tuple[str, dict[str, dict[str, Any]]]:
    """The ``case`` arms of build.sh (one per TensorRT line x precision) and the same as JSON: each the recipe of
    that line rendered as trtexec flags (refusals become arms that die with the recipe's reason)."""
    import shlex

    from segdeploy.trt.recipe import CacheHeader, EngineBuildOptions, UnsupportedByTensorRT
    from segdeploy.trt.trtexec import trtexec_command

    onnx = {p: f"model/{v.name}" for p, v in ed.onnx_variants().items()}
    onnx[Precision.INT8_IMPLICIT] = f"model/{MODEL_ONNX}"
    plugins = f"build/plugins/lib/{PLUGIN_LIBRARY}" if ed.needs_plugins else None
    options = EngineBuildOptions(version_compatible=version_compatible)
    arms, table = [], {}
    for line in [t for t in line_targets() if t.line in target.trt_lines]:
        for p in precisions:
            key = f"{line.line}:{p}"
            implicit = p == Precision.INT8_IMPLICIT
            try:  # build.sh stamps build/model.calib.cache with the detected TensorRT's header before trtexec runs
                cmd = trtexec_command(onnx[p], ed.input_name, ed.profile, p, target=line, plugin_library=plugins,
                                      calib_cache=f"build/{CALIB_CACHE}" if implicit else None,
                                      calib_header=CacheHeader(stamped=True) if implicit else None,
                                      timing_cache="build/timing.cache", save_engine=f"engines/model.{p}.engine",
                                      options=options, trtexec="trtexec")
            except (UnsupportedByTensorRT, UsageError) as e:
                table[key] = {"supported": False, "reason": e.message}
                arms.append(f'      "{key}") die {shlex.quote(e.message)} ;;')
                continue
            command = " ".join(['"$TRTEXEC"'] + [shlex.quote(a) for a in cmd.argv[1:]])
            table[key] = {"supported": True, "command": command, "notes": list(cmd.notes)}
            arms.append(f'      "{key}") {command} ;;')
    return "\n".join(arms), table


def _render_build_sh(precisions, ed: ExportDir, target: BundleTarget, cases: str, thresholds: dict[str, float],
                     version_compatible: bool = False) -> str:
    text = (TEMPLATES / "build.sh").read_text(encoding="utf-8")
    thr = "\n".join(f'    {p}) echo {v} ;;' for p, v in thresholds.items())
    return (text.replace("@SEGDEPLOY_VERSION@", __version__).replace("@TARGET_LABEL@", target.label)
            .replace("@PRECISIONS@", " ".join(precisions)).replace("@NEEDS_PLUGINS@", "1" if ed.needs_plugins else "0")
            .replace("@VERSION_COMPATIBLE@", "1" if version_compatible else "0")
            .replace("@DEFAULT_ARCH@", target.cuda_arch).replace("@TRTEXEC_CASES@", cases)
            .replace("@THRESHOLD_CASES@", thr))


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("build", "build-*", "__pycache__", "*.pyc", ".*"))


def _readme(target: BundleTarget, precisions: list[str], thresholds: dict[str, float], ed: ExportDir,
            cases: dict[str, dict[str, Any]], default_line: str) -> str:
    text = (TEMPLATES / "README.txt").read_text(encoding="utf-8")
    cmds = "\n".join(f"    # {k}\n    {v['command']}" for k, v in cases.items() if k.startswith(default_line + ":") and v["supported"])
    return (text.replace("@TARGET_LABEL@", target.label).replace("@PRECISIONS@", ", ".join(precisions))
            .replace("@THRESHOLDS@", ", ".join(f"{p} {v}%" for p, v in thresholds.items()))
            .replace("@PLUGINS@", "yes: plugins/ is built first" if ed.needs_plugins else "no")
            .replace("@DEFAULT_LINE@", default_line).replace("@TRTEXEC_EXAMPLE@", cmds or "    (none)")
            .replace("@CLASSES@", ", ".join(ed.class_names) or f"{ed.num_classes} classes")
            .replace("@DLA@", target.dla_note).replace("@SEGDEPLOY_VERSION@", __version__))


@dataclass(frozen=True)
class _Plan:
    """What a bundle run makes, every option and input checked before any file is written."""

    ed: ExportDir
    options: BundleOptions
    target: BundleTarget
    trt: Target  # the TensorRT of the README's commands and the calibration cache's header
    precisions: list[str]
    images: list[Path]
    out: Path  # absolute
    deepstream: str | None = None  # the precision of deepstream/ (--deepstream), else None


def make_bundle(export_dir: str | os.PathLike, out: str | os.PathLike, options: BundleOptions,
                progress: Progress | Callable[[str], None] | None = None) -> BundleResult:
    """Write the bundle (see module docstring)."""
    progress = as_progress(progress)
    plan = _plan(export_dir, out, options)
    try:
        with StagedDirectory(plan.out) as sd:
            notes = list(sd.notes)  # a killed run's leftovers that are not ours
            _remove_stale_archives(sd.parent_fd, plan.out.name)
            sd.stage()
            progress.step(f"bundle for {plan.target.label}: {', '.join(plan.precisions)}")
            if plan.target.key == TRITON:
                doc = _stage_triton(plan, sd.staging, notes, progress)
            else:
                samples = _stage_files(plan, sd.staging, notes, progress)
                deepstream = _stage_deepstream(plan, sd.staging, progress) if plan.deepstream else None
                doc = _render(plan, sd.staging, samples, notes, deepstream)
            archive = _archive(sd.parent_fd, sd.staging, plan.out) if options.archive else None
            sd.publish()
    except OSError as e:
        raise ArtifactError(f"cannot write the bundle {plan.out}: {e.strerror or e}; check free space and "
                            "permissions (nothing was published)") from None
    return BundleResult(plan.out, archive, doc, notes)


def _plan(export_dir: str | os.PathLike, out: str | os.PathLike, options: BundleOptions) -> _Plan:
    """Check the options, the export and ``out`` (cheap, before any work). Raises UsageError / ArtifactError /
    DataError."""
    target = resolve(options.target)
    trt = trt_target_for(target, options.trt_target)
    ed = ExportDir.open(export_dir)
    precisions = _precisions(ed, options)
    triton = target.key == TRITON
    images = [] if triton else _sample_images(ed, options)
    if ed.num_classes > 255 and not triton:
        raise UsageError(f"the model has {ed.num_classes} classes; the bundle's 8-bit reference maps hold up to 255")
    deepstream = _deepstream_precision(ed, precisions) if options.deepstream else None
    target_dir = Path(os.path.abspath(out))
    guard_outputs([("--out", out)], [("the export directory", ed.path)], directory=True)
    if target_dir.exists():
        if not target_dir.is_dir():
            raise ArtifactError(f"--out {target_dir} exists and is not a directory; choose another --out")
        if os.listdir(target_dir) and not (target_dir / BUNDLE_JSON).is_file():
            raise ArtifactError(f"{target_dir} is not empty and not a segdeploy bundle; choose an empty or new --out")
    return _Plan(ed, options, target, trt, precisions, images, target_dir, deepstream)


def _sample_images(ed: ExportDir, options: BundleOptions) -> list[Path]:
    from segdeploy.datasets import IMAGE_EXTENSIONS

    src = _sample_source(ed, options)
    images = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not images:
        raise DataError(f"{src} holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass --samples DIR with a few images")
    return images[: options.num_samples]


def _stage_files(plan: _Plan, staging: Path, notes: list[str], progress: Progress) -> list[dict[str, Any]]:
    """model/, calib/, plugins/, runtime/, tools/ and samples/ into ``staging``; returns the sample records."""
    ed = plan.ed
    left_out = ed.copy_without_engines(staging / "model")
    if left_out:
        notes.append(f"left out {', '.join(left_out)}: engines run only on the GPU and TensorRT they were built "
                     "with; build.sh builds them on the device")
    if ed.has(CALIB_CACHE):
        _stamp_cache(ed.file(CALIB_CACHE), staging / "calib" / CALIB_CACHE, plan.trt, notes)
    if ed.needs_plugins:
        (staging / "plugins").mkdir()
        shutil.copy2(PACKAGE / "plugins" / "CMakeLists.txt", staging / "plugins" / "CMakeLists.txt")
        _copy_tree(PACKAGE / "plugins" / "csrc", staging / "plugins" / "csrc")
        _copy_tree(PACKAGE / "plugins" / "trt", staging / "plugins" / "trt")
    _copy_tree(PACKAGE / "runtime" / "cpp", staging / "runtime")
    (staging / "tools").mkdir()
    shutil.copy2(PACKAGE / "platform" / "detect_trt.sh", staging / "tools" / "detect_trt.sh")
    return _references(ed, plan.images, staging, progress)


def _render(plan: _Plan, staging: Path, samples: list[dict[str, Any]], notes: list[str],
            deepstream: dict[str, Any] | None = None) -> dict[str, Any]:
    """build.sh, README.md and bundle.json (every file's sha256) into ``staging``, every file's mode set; returns
    the bundle.json document."""
    ed, options, target = plan.ed, plan.options, plan.target
    thresholds = _thresholds(ed, plan.precisions)
    cases, table = _trtexec_cases(ed, plan.precisions, target, options.version_compatible)
    (staging / "build.sh").write_text(_render_build_sh(plan.precisions, ed, target, cases, thresholds,
                                                       options.version_compatible), encoding="utf-8")
    os.chmod(staging / "build.sh", 0o755)
    os.chmod(staging / "tools" / "detect_trt.sh", 0o755)
    (staging / "README.md").write_text(_readme(target, plan.precisions, thresholds, ed, table, plan.trt.line),
                                       encoding="utf-8")
    files = {str(p.relative_to(staging)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(staging.rglob("*")) if _is_bundle_file(staging, p)}
    doc = {"schema": SCHEMA, "schema_version": 1, "segdeploy_version": __version__,
           "target": {"key": target.key, "label": target.label, "cuda_arch": target.cuda_arch,
                      "trt_lines": list(target.trt_lines), "default_trt": plan.trt.line, "trt": plan.trt.to_dict()},
           "source": {"export_dir": str(ed.path), "manifest_source_sha256": ed.source_sha256},
           "precisions": plan.precisions, "needs_plugins": ed.needs_plugins, "samples": samples,
           "version_compatible": options.version_compatible,
           "smoke_test": {"thresholds": thresholds, "rule": "percent of pixels equal to samples/reference/"},
           "trtexec": table, "files": files, "notes": notes, "deepstream": deepstream}
    (staging / BUNDLE_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for p in staging.rglob("*"):  # every file here is a new inode this run wrote (no links)
        if _is_bundle_file(staging, p) and p.name not in ("build.sh", "detect_trt.sh"):
            os.chmod(p, 0o644)
    return doc


# ------------------------------------------------------------------------------------------------ DeepStream, Triton

DEEPSTREAM_DIR = "deepstream"
# nvinfer's formula + the variant vs the manifest's preprocessing + the model, classes on the sample images: float
# rounding differs in the last bit (an INT8 model can move a pixel across a quantization step), nothing more
DEEPSTREAM_MIN_AGREEMENT = 0.999
DEEPSTREAM_ORDER = (Precision.INT8, Precision.FP16, Precision.FP32, Precision.INT8_IMPLICIT)


def _deepstream_precision(ed: ExportDir, precisions: list[str]) -> str:
    """The precision deepstream/ is configured for: the first of int8, fp16, fp32, int8-implicit the bundle builds
    (plugin models: fp32). Checks here, before any work, that nvinfer can build it (UsageError)."""
    from segdeploy.bundle import deepstream as ds

    p = Precision.FP32 if ed.needs_plugins else next(p for p in DEEPSTREAM_ORDER if p in precisions)
    ds.plan_for(p, ed.profile, ed.num_classes, int8_calib_file=_ds_calib(ed), custom_lib_path=None, with_labels=True)
    return p


def _ds_calib(ed: ExportDir) -> str | None:
    return f"../calib/{CALIB_CACHE}" if ed.has(CALIB_CACHE) else None


def _stage_deepstream(plan: _Plan, staging: Path, progress: Progress) -> dict[str, Any]:
    """deepstream/: the nvinfer configuration, the DeepStream variant (verified against the manifest's preprocessing
    on the sample images) and the labels; paths in the configuration are relative to it."""
    from segdeploy.bundle import deepstream as ds
    from segdeploy.datasets import read_image

    assert plan.deepstream is not None
    progress.step(f"DeepStream configuration and variant ({plan.deepstream}), checked on {len(plan.images)} sample(s)")
    (staging / DEEPSTREAM_DIR).mkdir()
    lib = f"../build/plugins/lib/{PLUGIN_LIBRARY}" if plan.ed.needs_plugins else None
    info = ds.write_files(plan.ed, staging / DEEPSTREAM_DIR, [read_image(p) for p in plan.images], plan.deepstream,
                          int8_calib_file=_ds_calib(plan.ed), custom_lib_path=lib)
    agreement = info["check"]["class_agreement"]
    if agreement < DEEPSTREAM_MIN_AGREEMENT:
        raise VerificationError(f"the DeepStream variant ({info['onnx']}) after nvinfer's normalisation agrees with "
                                f"{info['source_onnx']} on only {100 * agreement:.2f}% of the sample pixels (needs "
                                f"{100 * DEEPSTREAM_MIN_AGREEMENT:.1f}%); report this with the model (nothing was "
                                "published)")
    return {**info, "directory": DEEPSTREAM_DIR, "min_agreement": DEEPSTREAM_MIN_AGREEMENT}


def _triton_name(ed: ExportDir) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", ed.path.name).strip("_") or "segdeploy"


def _stage_triton(plan: _Plan, staging: Path, notes: list[str], progress: Progress) -> dict[str, Any]:
    """The Triton model repository (:func:`segdeploy.bundle.triton.write_repository`) and its bundle.json: the
    onnxruntime model serves fp32; the TensorRT plan is built for the first precision the bundle names."""
    from segdeploy.bundle import triton

    ed, name = plan.ed, _triton_name(plan.ed)
    trt_precision = next((p for p in (Precision.INT8, Precision.FP16, Precision.FP32) if p in plan.precisions),
                         plan.precisions[0])
    progress.step(f"Triton model repository {name} (onnxruntime fp32, tensorrt_plan {trt_precision})")
    info = triton.write_repository(ed, staging, name=name, trt_precision=trt_precision, trt_line=plan.trt.line)
    if not any(m["end_to_end"] for m in info["models"].values()):
        notes.append("the export has no end-to-end variant: Triton serves float32 NCHW in and scores out (export "
                     "with --end-to-end to serve uint8 frames in and the class map out)")
    files = {str(p.relative_to(staging)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(staging.rglob("*")) if _is_bundle_file(staging, p)}
    doc = {"schema": SCHEMA, "schema_version": 1, "segdeploy_version": __version__,
           "target": {"key": plan.target.key, "label": plan.target.label, "trt": plan.trt.to_dict()},
           "source": {"export_dir": str(ed.path), "manifest_source_sha256": ed.source_sha256},
           TRITON: {"name": name, **info}, "files": files, "notes": notes}
    (staging / BUNDLE_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return doc


def _is_bundle_file(staging: Path, p: Path) -> bool:
    """A regular file of the bundle (not a link, not the staging directory's work marker)."""
    return p.is_file() and not p.is_symlink() and p != staging / safefs.WORK_MARKER


def _remove_stale_archives(pfd: int, name: str) -> None:
    """Unlink a killed run's temporary archives ``.<name>.tar.gz.tmp-*`` (unlink never follows a link)."""
    prefix = f".{name}.tar.gz.tmp-"
    for n in os.listdir(pfd):
        if n.startswith(prefix):
            st = os.stat(n, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(n, dir_fd=pfd)


def _stamp_cache(src: Path, dst: Path, trt: Target, notes: list[str]) -> None:
    """The calibration cache with the header of the target TensorRT (implicit INT8 needs the exact version)."""
    from segdeploy.trt.calib_cache import ALGORITHM

    dst.parent.mkdir(parents=True)
    raw = safefs.read_file(src, fix=REEXPORT)  # never through a link, never a FIFO
    code = trt.calib_cache_code
    if code is None:
        notes.append(f"calib/{CALIB_CACHE} keeps its header ({trt.label} is not one version); build.sh re-stamps it "
                     "for the TensorRT it finds")
        safefs.atomic_write(dst, raw)
        return
    lines = raw.decode("utf-8").splitlines()
    safefs.atomic_write(dst, ("\n".join([f"TRT-{code}-{ALGORITHM}"] + lines[1:]) + "\n").encode("utf-8"))


def _archive(pfd: int, staging: Path, target_dir: Path) -> Path:
    """``<out>.tar.gz`` (top folder named like ``out``), written to a new temp file (``O_EXCL | O_NOFOLLOW``: never
    through a planted link) and renamed into place relative to the parent directory."""
    arc = f"{target_dir.name}.tar.gz"
    tmp = f".{target_dir.name}.tar.gz.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        fd = safefs.create_new(pfd, tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            with tarfile.open(fileobj=f, mode="w:gz") as tar:
                tar.add(staging, arcname=target_dir.name, filter=_tar_filter)
        os.rename(tmp, arc, src_dir_fd=pfd, dst_dir_fd=pfd)
    except BaseException:
        with contextlib.suppress(OSError):  # a SIGKILL's leftover is removed by the next run instead
            os.unlink(tmp, dir_fd=pfd)
        raise
    return target_dir.parent / arc


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.name.split("/")[1:] == [safefs.WORK_MARKER]:
        return None  # the staging directory's work marker is not part of the bundle
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info
