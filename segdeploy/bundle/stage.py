"""Make a device bundle from an export directory.

Contract
--------
``make_bundle(export_dir, out, BundleOptions(...), progress) -> BundleResult`` writes a self-contained directory
(and ``<out>.tar.gz`` beside it) holding:

* ``model/`` -- the export's files exactly as its manifest lists them (sha256-checked while copying), except
  engines, which only run on the GPU they were built on (their entries are dropped from the bundle's manifest,
  so ``model/`` is itself a valid export directory for ``segdeploy build`` on the device);
* ``calib/model.calib.cache`` -- when the export has one, with the header for ``--trt-version`` (build.sh
  re-stamps it for the TensorRT it finds, for implicit INT8 on TensorRT 8.6/10.x);
* ``plugins/`` -- segdeploy's plugin sources + CMake project, only when the model needs them;
* ``runtime/`` -- the C++ runtime (``segdeploy::Segmenter`` + ``segdeploy_infer``), built on the device;
* ``samples/images/`` + ``samples/reference/`` -- sample images and their reference class maps (the FP32 ONNX
  on ONNX Runtime with the manifest's preprocessing, which the export verified against PyTorch), 8-bit PNG;
* ``tools/detect_trt.sh``, ``build.sh`` (plugins -> engines (``segdeploy build`` where Python has segdeploy and
  TensorRT, else the exact trtexec command for the detected TensorRT line) -> runner -> smoke test against
  the reference maps with per-precision thresholds), ``README.md``, ``bundle.json`` (every file's sha256, the
  thresholds, the trtexec commands per TensorRT line, notes).

The directory is published in one step (staged beside ``out``, swapped in; a lock refuses a second writer); an
existing ``out`` must be an earlier bundle or empty, and may not be (inside) the export directory
(:func:`segdeploy.exportdir.guard_outputs`). Every file operation goes through :mod:`segdeploy.safefs`: the
export's files are read without following links and only when regular, the staging directory carries the work
marker until it is published, a killed run's leftovers are removed only when they are ours, and the archive is
written to a new temporary file (never through a link) renamed into place.
Raises ArtifactError / UsageError / DataError, one line each.
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

from segdeploy import __version__
from segdeploy.bundle.targets import BundleTarget, resolve
from segdeploy.errors import ArtifactError, DataError, UsageError
from segdeploy import safefs
from segdeploy.exportdir import DirLock, ExportDir, clean_work_dirs, guard_outputs, publish_directory
from segdeploy.vocab import (CALIB_CACHE, GATED_ORT_LEVEL, IMAGES_DIR, MANIFEST, MODEL_ONNX, ONNX_PRECISIONS, Precision, split_dirs)
from segdeploy.fsutil import sha256_file
from segdeploy.manifest import REEXPORT
from segdeploy.trt.versions import TARGETS as TRT_TARGETS

SCHEMA = "segdeploy.bundle"
BUNDLE_JSON = "bundle.json"
# smoke-test thresholds (percent of pixels equal to the reference map): FP32 engines may flip a few boundary
# pixels (TF32, other reduction orders); FP16/INT8 get the CPU-measured agreement minus a margin for the
# engine's own FP16 remainder and fusions.
FP32_THRESHOLD = 99.5
MARGIN = 1.0
DEFAULT_THRESHOLD = {Precision.FP16: 97.0, Precision.INT8: 95.0, Precision.INT8_IMPLICIT: 95.0}
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class BundleOptions:
    target: str = "orin"
    trt_version: str | None = None  # the TensorRT line the bundle's defaults are for (default: the target's)
    precisions: tuple[str, ...] | None = None  # None: every ONNX variant the export holds
    samples: str | None = None  # image folder; None: the validation images the precision stage used
    num_samples: int = 4
    archive: bool = True
    version_compatible: bool = False  # engines built VERSION_COMPATIBLE; the smoke test then runs with --trust-host-code

    def __post_init__(self) -> None:
        t = resolve(self.target)
        if self.trt_version is not None:
            from segdeploy.trt.versions import resolve_target

            line = resolve_target(self.trt_version).key
            if line not in t.trt_lines:
                raise UsageError(f"--trt-version {self.trt_version} (TensorRT {line}) does not run on {t.label}; use one of "
                                 f"{', '.join(t.trt_lines)}")
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
        return {"bundle": str(self.path), "archive": None if self.archive is None else str(self.archive),
                "target": self.doc["target"], "precisions": self.doc["precisions"],
                "files": len(self.doc["files"]), "samples": len(self.doc["samples"]),
                "thresholds": self.doc["smoke_test"]["thresholds"], "notes": list(self.notes)}


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
    val = ((ed.section("precision") or {}).get("validation") or {}).get("source")
    if val:
        p = Path(val)
        p = split_dirs(p)[0]
        if p.is_dir():
            return p
    raise UsageError("no sample images for the smoke test: pass --samples DIR (a few images of the kind the model "
                     "sees; the export recorded no validation split that exists here)")


def _references(ed: ExportDir, images: list[Path], staging: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Sample images + reference class maps (FP32 ONNX on ONNX Runtime) into samples/ -> per-sample records."""
    from PIL import Image

    from segdeploy.datasets import Dataset, Entry
    from segdeploy.evaluation import PredictionLoop
    from segdeploy.runners import open_runner

    if ed.num_classes > 255:
        raise UsageError(f"the model has {ed.num_classes} classes; the bundle's 8-bit reference maps hold up to 255")
    (staging / "samples" / IMAGES_DIR).mkdir(parents=True)
    (staging / "samples" / "reference").mkdir(parents=True)
    ds = Dataset([Entry(p.stem, str(p)) for p in images], description="bundle samples")
    runner = open_runner(str(ed.file(MODEL_ONNX)), kind="onnxruntime")
    say(f"reference masks for {len(images)} sample image(s) with ONNX Runtime (model.onnx)")
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
    prec = ed.section("precision") or {}
    out: dict[str, float] = {}
    for p in precisions:
        if p == Precision.FP32:
            out[p] = FP32_THRESHOLD
            continue
        acc = (prec.get(Precision.INT8 if p.startswith(Precision.INT8) else p) or {}).get("accuracy") or {}
        agree = ((acc.get("levels") or {}).get(GATED_ORT_LEVEL) or {}).get("agreement_vs_reference")
        out[p] = round(max(90.0, 100.0 * agree - MARGIN), 2) if agree is not None else DEFAULT_THRESHOLD[p]
    return out


def _trtexec_cases(ed: ExportDir, precisions: list[str], target: BundleTarget,
                   version_compatible: bool = False) -> tuple[str, dict[str, dict[str, Any]]]:
    """The ``case`` arms of build.sh (one per TensorRT line x precision) and the same as JSON."""
    import shlex

    from segdeploy.trt.recipe import UnsupportedByTensorRT
    from segdeploy.trt.trtexec import trtexec_command

    onnx = {p: f"model/{v.name}" for p, v in ed.onnx_variants().items()}
    onnx[Precision.INT8_IMPLICIT] = "model/model.onnx"
    plugins = "build/plugins/lib/libsegdeploy_trt_plugins.so" if ed.needs_plugins else None
    arms, table = [], {}
    for line in TRT_TARGETS:
        if line not in target.trt_lines:
            continue
        for p in precisions:
            key = f"{line}:{p}"
            try:
                cmd = trtexec_command(onnx[p], ed.input_name, ed.profile, p, target=line, plugin_library=plugins,
                                      calib_cache="build/model.calib.cache" if p == Precision.INT8_IMPLICIT else None,
                                      timing_cache="build/timing.cache", save_engine=f"engines/model.{p}.engine",
                                      version_compatible=version_compatible)
            except (UnsupportedByTensorRT, UsageError) as e:
                reason = e.message
                table[key] = {"supported": False, "reason": reason}
                arms.append(f'      "{key}") die {shlex.quote(reason)} ;;')
                continue
            argv = ['"$TRTEXEC"'] + [shlex.quote(a) for a in cmd.argv[1:]]
            table[key] = {"supported": True, "command": cmd.shell(), "notes": list(cmd.notes)}
            arms.append(f'      "{key}") {" ".join(argv)} ;;')
    return "\n".join(arms), table


def _render_build_sh(precisions, ed: ExportDir, target: BundleTarget, cases: str, thresholds: dict[str, float],
                     version_compatible: bool = False) -> str:
    text = (TEMPLATES / "build.sh").read_text(encoding="utf-8")
    stamp = ""
    if Precision.INT8_IMPLICIT in precisions:
        # implicit INT8 reads the cache through trtexec --calib: its header must name the TensorRT it runs on
        stamp = ('\nif [ -f calib/model.calib.cache ]; then\n'
                 '  IFS=. read -r MA MI PA _ <<EOF_V\n$TRT_VERSION\nEOF_V\n'
                 '  if [ "$MA" -ge 10 ]; then CODE=$((MA * 10000 + MI * 100 + PA)); else CODE=$((MA * 1000 + MI * 100 + PA)); fi\n'
                 '  { echo "TRT-$CODE-EntropyCalibration2"; tail -n +2 calib/model.calib.cache; } > build/model.calib.cache\n'
                 'fi\n')
    thr = "\n".join(f'    {p}) echo {v} ;;' for p, v in thresholds.items())
    return (text.replace("@SEGDEPLOY_VERSION@", __version__).replace("@TARGET_LABEL@", target.label)
            .replace("@PRECISIONS@", " ".join(precisions)).replace("@NEEDS_PLUGINS@", "1" if ed.needs_plugins else "0")
            .replace("@VERSION_COMPATIBLE@", "1" if version_compatible else "0")
            .replace("@DEFAULT_ARCH@", target.cuda_arch).replace("@TRTEXEC_CASES@", cases)
            .replace("@THRESHOLD_CASES@", thr)
            .replace('mkdir -p engines build\n', 'mkdir -p engines build\n' + stamp.lstrip("\n")))


def _copy_model(ed: ExportDir, dst: Path, notes: list[str]) -> dict[str, Any]:
    """model/: every listed non-engine file (hash-checked); the manifest without engine entries."""
    dst.mkdir(parents=True)
    manifest = json.loads(json.dumps(ed.manifest))
    engines = [n for n, e in ed.files.items() if e.kind == "engine"]
    with safefs.dir_handle(ed.path) as src_fd, safefs.dir_handle(dst) as dst_fd:
        for name, entry in ed.files.items():
            if entry.kind == "engine":
                continue
            fd = safefs.open_regular(src_fd, name, shown=ed.path / name, fix=REEXPORT)
            try:
                safefs.copy_fd_at(fd, dst_fd, name)
            finally:
                os.close(fd)
    if engines:
        notes.append(f"left out {', '.join(sorted(engines))}: engines run only on the GPU and TensorRT they were built "
                     "with; build.sh builds them on the device")
        for n in engines:
            manifest["files"].pop(n)
        manifest.pop("engines", None)
    safefs.atomic_write(dst / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    ExportDir.open(dst)  # a valid export directory, every copied file hash-checked against the manifest
    return manifest


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


def make_bundle(export_dir: str | os.PathLike, out: str | os.PathLike, options: BundleOptions,
                progress: Callable[[str], None] | None = None) -> BundleResult:
    """Write the bundle (see module docstring)."""
    say = progress or (lambda msg: None)
    target = resolve(options.target)
    from segdeploy.trt.versions import resolve_target

    default_line = resolve_target(options.trt_version).key if options.trt_version else target.default_trt
    ed = ExportDir.open(export_dir)
    precisions = _precisions(ed, options)
    src = _sample_source(ed, options)
    from segdeploy.datasets import IMAGE_EXTENSIONS

    images = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not images:
        raise DataError(f"{src} holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass --samples DIR with a few images")
    images = images[: options.num_samples]
    target_dir = Path(os.path.abspath(out))
    guard_outputs([("--out", out)], [("the export directory", ed.path)], directory=True)
    if target_dir.exists():
        if not target_dir.is_dir():
            raise ArtifactError(f"--out {target_dir} exists and is not a directory; choose another --out")
        if os.listdir(target_dir) and not (target_dir / BUNDLE_JSON).is_file():
            raise ArtifactError(f"{target_dir} is not empty and not a segdeploy bundle; choose an empty or new --out")
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = DirLock(target_dir)
    lock.acquire()
    staging = target_dir.parent / f".{target_dir.name}.staging-{secrets.token_hex(4)}"
    notes: list[str] = []
    try:
        pfd = safefs.open_dir(target_dir.parent)
    except OSError as e:
        lock.release()
        raise ArtifactError(f"cannot open {target_dir.parent}: {e.strerror or e}; choose another --out") from None
    try:
        notes += clean_work_dirs(pfd, target_dir, ("staging",))  # a killed run's, when they are ours
        _remove_stale_archives(pfd, target_dir.name)
        os.close(safefs.make_work_dir(pfd, staging.name, 0o777 & ~_umask()))
        say(f"bundle for {target.label}: {', '.join(precisions)}")
        _copy_model(ed, staging / "model", notes)
        if ed.has(CALIB_CACHE):
            _stamp_cache(ed.file(CALIB_CACHE), staging / "calib" / CALIB_CACHE, default_line, notes)
        if ed.needs_plugins:
            plug = Path(__file__).resolve().parents[1] / "plugins"
            (staging / "plugins").mkdir()
            shutil.copy2(plug / "CMakeLists.txt", staging / "plugins" / "CMakeLists.txt")
            _copy_tree(plug / "csrc", staging / "plugins" / "csrc")
            _copy_tree(plug / "trt", staging / "plugins" / "trt")
        _copy_tree(Path(__file__).resolve().parents[1] / "runtime" / "cpp", staging / "runtime")
        (staging / "tools").mkdir()
        shutil.copy2(Path(__file__).resolve().parents[1] / "platform" / "detect_trt.sh", staging / "tools" / "detect_trt.sh")
        samples = _references(ed, images, staging, say)
        thresholds = _thresholds(ed, precisions)
        cases, table = _trtexec_cases(ed, precisions, target, options.version_compatible)
        (staging / "build.sh").write_text(_render_build_sh(precisions, ed, target, cases, thresholds,
                                                           options.version_compatible), encoding="utf-8")
        os.chmod(staging / "build.sh", 0o755)
        os.chmod(staging / "tools" / "detect_trt.sh", 0o755)
        (staging / "README.md").write_text(_readme(target, precisions, thresholds, ed, table, default_line), encoding="utf-8")
        files = {str(p.relative_to(staging)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(staging.rglob("*")) if _is_bundle_file(staging, p)}
        doc = {"schema": SCHEMA, "schema_version": 1, "segdeploy_version": __version__,
               "target": {"key": target.key, "label": target.label, "cuda_arch": target.cuda_arch,
                          "trt_lines": list(target.trt_lines), "default_trt": default_line},
               "source": {"export_dir": str(ed.path), "manifest_source_sha256": ed.source_sha256},
               "precisions": precisions, "needs_plugins": ed.needs_plugins, "samples": samples,
               "version_compatible": options.version_compatible,
               "smoke_test": {"thresholds": thresholds, "rule": "percent of pixels equal to samples/reference/"},
               "trtexec": table, "files": files, "notes": notes}
        (staging / BUNDLE_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for p in staging.rglob("*"):  # every file here is a new inode this run wrote (no links)
            if _is_bundle_file(staging, p) and p.name not in ("build.sh", "detect_trt.sh"):
                os.chmod(p, 0o644)
        archive = _archive(pfd, staging, target_dir) if options.archive else None
        publish_directory(staging, target_dir)
    except OSError as e:
        raise ArtifactError(f"cannot write the bundle {target_dir}: {e.strerror or e}; check free space and "
                            "permissions (nothing was published)") from None
    finally:
        shutil.rmtree(staging.name, dir_fd=pfd, ignore_errors=True)
        os.close(pfd)
        lock.release()
    return BundleResult(target_dir, archive, doc, notes)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


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


def _stamp_cache(src: Path, dst: Path, line: str, notes: list[str]) -> None:
    """The calibration cache with the header of ``line``'s TensorRT (implicit INT8 needs the exact version)."""
    from segdeploy.trt.calib_cache import ALGORITHM
    from segdeploy.trt.versions import TARGETS

    dst.parent.mkdir(parents=True)
    raw = safefs.read_file(src, fix=REEXPORT)  # never through a link, never a FIFO
    code = TARGETS[line].calib_cache_version
    if code is None:
        notes.append(f"calib/{CALIB_CACHE} keeps its header; build.sh re-stamps it for the TensorRT it finds")
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
