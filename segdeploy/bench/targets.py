"""Artifacts -> benchmark targets: which runner runs which file, at which precision, inside which profile.

``expand_targets(artifacts, runners=(), options=TargetOptions()) -> Expansion``

* ``artifacts``: paths, in the order given (the first target is the baseline of every ratio). Each is
  - a model file (``.pt2``, TorchScript, ``.pt``/``.pth`` ...): torch runners;
  - an ``.onnx`` file: ONNX Runtime runners;
  - an engine (``.engine``/``.plan``/``.trt``): the TensorRT runner;
  - an export directory (``segdeploy export --out DIR``, opened with :class:`segdeploy.exportdir.ExportDir`):
    ``model.onnx`` (FP32), ``model.int8.onnx``, ``model.fp16.onnx`` and the manifest's engines, in that order.
* ``runners``: names from :data:`RUNNERS`. Empty: the defaults of each kind -- ``torch`` (+ ``torch-cuda`` when
  torch sees a GPU) for a model, ``ort-cpu`` (+ ``ort-cuda`` when this onnxruntime has the CUDA provider) for
  an ONNX, ``tensorrt`` for an engine (an export directory's engines are skipped with a note when TensorRT is
  not installed). Given: each artifact gets the given runners that can run it; an artifact that none can run
  is a UsageError naming the runners that would.
* A ``manifest.json`` beside an ``.onnx``/engine (or the export directory's own) gives the target's shape
  profile (engines: their own ``engines[].profile`` when recorded) and its precision.

Returns an :class:`Expansion`: the targets, the skipped ones (artifact, runner, reason) and notes.
Raises ArtifactError (missing artifact, invalid export directory, ONNX with TensorRT plugin nodes given to
ONNX Runtime), UsageError (runner/artifact mismatch, unknown runner). Nothing is loaded here except ONNX
graphs' node lists (to tell the precision) and manifests; runners are made by :func:`make_runner`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.plugins.locate import PLUGINS_ENV
from segdeploy.runners import ENGINE_SUFFIXES
from segdeploy.runners.base import Runner
from segdeploy.vocab import OrtLevel, Precision

# runner name -> (artifact kind it runs, device, backend detail)
RUNNERS: dict[str, tuple[str, str, str]] = {
    "torch": ("model", "cpu", "PyTorch eager"),
    "torch-cuda": ("model", "cuda", "PyTorch eager"),
    "torch-compile": ("model", "cpu", "torch.compile (inductor)"),
    "torch-compile-cuda": ("model", "cuda", "torch.compile (inductor)"),
    "ort-cpu": ("onnx", "cpu", "ONNX Runtime CPUExecutionProvider"),
    "ort-cuda": ("onnx", "cuda", "ONNX Runtime CUDAExecutionProvider"),
    "ort-tensorrt": ("onnx", "cuda", "ONNX Runtime TensorrtExecutionProvider"),
    "tensorrt": ("engine", "cuda", "TensorRT engine"),
}
KIND_WORDS = {"model": "a model file", "onnx": "an .onnx file", "engine": "a TensorRT engine"}

@dataclass(frozen=True)
class TargetOptions:
    """How targets are turned into runners (all runner-independent settings live here)."""

    threads: int | None = None  # intra-op threads for ONNX Runtime sessions (torch: see run.torch_threads)
    ort_opt_level: str = OrtLevel.ALL
    trust_pickle: bool = False
    plugin_library: str | None = None  # TensorRT plugin library for engines that need it

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads} is not a thread count; pass --threads 1 or more")
        object.__setattr__(self, "ort_opt_level", OrtLevel.parse(self.ort_opt_level, "--ort-opt-level"))


@dataclass(frozen=True)
class Target:
    """One (artifact, runner) pair to measure."""

    label: str  # unique, for tables: e.g. "model.int8.onnx [ort-cpu]"
    artifact: Path
    kind: str  # model | onnx | engine
    runner: str  # key of RUNNERS
    precision: str  # fp32 | fp16 | int8 | int8-implicit | unknown
    profile: Any = None  # segdeploy.spec.ShapeProfile or None
    manifest: Path | None = None  # the manifest that gave profile/precision
    source: str | None = None  # the export directory this target came from, if any
    notes: tuple[str, ...] = ()
    execution: dict[str, Any] | None = None  # what the backend runs, where inspected (ORT CPU + Q/DQ: ortgraph)

    @property
    def device(self) -> str:
        return RUNNERS[self.runner][1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "artifact": str(self.artifact),
            "kind": self.kind,
            "runner": self.runner,
            "backend": RUNNERS[self.runner][2],
            "device": self.device,
            "precision": self.precision,
            "profile": self.profile.to_dict() if self.profile is not None else None,
            "manifest": str(self.manifest) if self.manifest is not None else None,
            "export_dir": self.source,
            "notes": list(self.notes),
            "execution": self.execution,
        }


@dataclass(frozen=True)
class Skipped:
    artifact: str
    runner: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "runner": self.runner, "reason": self.reason}


@dataclass
class Expansion:
    targets: list[Target] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- classification


def artifact_kind(path: Path) -> str:
    """'export-dir' | 'onnx' | 'engine' | 'model' for an existing path. Raises ArtifactError when missing."""
    if not path.exists():
        raise ArtifactError(
            f"artifact {path} not found; pass a model file, an .onnx, a TensorRT engine or an export directory"
        )
    if path.is_dir():
        return "export-dir"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    return "model"


def onnx_facts(path: Path) -> tuple[str, bool]:
    """(precision, has_plugin_nodes) of an ONNX file from its node list (weights are not loaded).

    int8: any QuantizeLinear/DequantizeLinear/QLinear* node; fp16: any FLOAT16 initializer or Cast to
    FLOAT16; else fp32. Raises ArtifactError when the file is not a readable ONNX model.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / OSError / ValueError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ArtifactError(f"{path} is not a readable ONNX model ({first}); re-export it") from None
    graph = model.graph
    ops: set[str] = set()
    domains: set[str] = set()

    def walk(g) -> None:
        for n in g.node:
            ops.add(n.op_type)
            domains.add(n.domain)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(graph)
    from segdeploy.plugins.onnx_mapping import PLUGIN_DOMAIN

    plugins = PLUGIN_DOMAIN in domains
    if ops & {"QuantizeLinear", "DequantizeLinear"} or any(o.startswith("QLinear") for o in ops):
        return Precision.INT8, plugins
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    if not fp16:
        for n in graph.node:
            if n.op_type == "Cast":
                fp16 = any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute)
                if fp16:
                    break
    return (Precision.FP16 if fp16 else Precision.FP32), plugins


def _engine_precision_from_name(path: Path) -> str:
    parts = path.name.split(".")
    if len(parts) == 3 and parts[0] == "model":
        return parts[1]
    return "unknown"


def _open_export(path: Path):
    from segdeploy.exportdir import ExportDir

    return ExportDir.open(path)


def _beside(path: Path):
    """The ExportDir holding ``path`` when a manifest.json entry sits beside it (validated: a FIFO or link there is
    one line, never ignored), else None."""
    from segdeploy.exportdir import ExportDir

    return ExportDir.beside(path)


def _engine_profile(ed, entry: dict[str, Any] | None):
    from segdeploy.spec import ShapeProfile

    if entry and entry.get("profile"):
        return ShapeProfile.from_dict(entry["profile"])
    return ed.profile


# ---------------------------------------------------------------------------------------------- defaults


def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _ort_has(provider: str) -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return provider in onnxruntime.get_available_providers()


def default_runners(kind: str) -> list[str]:
    """Runners used for ``kind`` when --runner is not given (see module docstring)."""
    if kind == "model":
        return ["torch"] + (["torch-cuda"] if _torch_has_cuda() else [])
    if kind == "onnx":
        return ["ort-cpu"] + (["ort-cuda"] if _ort_has("CUDAExecutionProvider") else [])
    return ["tensorrt"]


def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


# --------------------------------------------------------------------------------------------- expansion


def _runners_for(kind: str, selected: list[str]) -> list[str]:
    return [r for r in selected if RUNNERS[r][0] == kind] if selected else default_runners(kind)


def _fitting(kind: str) -> str:
    return ", ".join(r for r, (k, _, _) in RUNNERS.items() if k == kind)


def _onnx_targets(path: Path, runners: list[str], ed, source: str | None, exp: Expansion,
                  explicit: bool) -> list[Target]:
    precision, plugins = onnx_facts(path)
    if plugins:
        msg = (f"{path} holds segdeploy TensorRT plugin nodes, which ONNX Runtime cannot run; "
               "bench model.onnx (standard ops) with ort-cpu, or an engine built from this file")
        if explicit:
            raise ArtifactError(msg)
        for r in runners:
            exp.skipped.append(Skipped(str(path), r, msg))
        return []
    return [Target(label=f"{path.name} [{r}]", artifact=path, kind="onnx", runner=r, precision=precision,
                   profile=ed.profile if ed is not None else None,
                   manifest=ed.manifest_path if ed is not None else None, source=source)
            for r in runners]


def _engine_targets(path: Path, runners: list[str], ed, source: str | None) -> list[Target]:
    entry = ed.engine_entry(path.name) if ed is not None else None
    precision = (entry or {}).get("precision") or _engine_precision_from_name(path)
    profile = _engine_profile(ed, entry) if ed is not None else None
    notes = ()
    if entry and entry.get("plugins"):
        notes = ((f"built with the plugin library {entry['plugins']}: loaded from --plugins, else ${PLUGINS_ENV} or "
                  "the `segdeploy plugins build` output"),)
    return [Target(label=f"{path.name} [{r}]", artifact=path, kind="engine", runner=r, precision=precision,
                   profile=profile, manifest=ed.manifest_path if ed is not None else None,
                   source=source, notes=notes) for r in runners]


def _model_targets(path: Path, runners: list[str]) -> list[Target]:
    ed = None
    try:
        ed = _beside(path)
    except ArtifactError:
        ed = None  # a model file beside someone's broken export is not ours to judge
    return [Target(label=f"{path.name} [{r}]", artifact=path, kind="model", runner=r, precision=Precision.FP32,
                   profile=ed.profile if ed is not None else None,
                   manifest=ed.manifest_path if ed is not None else None) for r in runners]


def _expand_dir(path: Path, selected: list[str], exp: Expansion) -> list[Target]:
    from segdeploy.vocab import MODEL_ONNX

    ed = _open_export(path)
    src = str(path)
    out: list[Target] = []
    n_skipped = len(exp.skipped)
    onnx_runners = _runners_for("onnx", selected)
    files = [(Precision.FP32, ed.file(MODEL_ONNX))]
    variants = ed.onnx_variants()
    for prec in (Precision.INT8, Precision.FP16):
        if prec in variants:
            files.append((prec, variants[prec]))
    for _, f in files:
        out += _onnx_targets(f, onnx_runners, ed, src, exp, explicit=False)
    engine_runners = _runners_for("engine", selected)
    for name in ed.engine_files:
        f = ed.file(name)
        if not engine_runners:
            continue
        if not selected and not tensorrt_installed():
            exp.skipped.append(Skipped(str(f), "tensorrt", "TensorRT is not installed here (`import tensorrt` fails); "
                                                           "run on the machine the engine was built for"))
            continue
        out += _engine_targets(f, engine_runners, ed, src)
    if not out and len(exp.skipped) == n_skipped:
        raise UsageError(f"none of the given --runner values runs the artifacts of {path} "
                         f"(ONNX: {_fitting('onnx')}; engines: {_fitting('engine')})")
    return out


def expand_targets(artifacts: list[str | os.PathLike], runners: tuple[str, ...] | list[str] = ()) -> Expansion:
    """Expand artifacts into targets (see module docstring)."""
    if not artifacts:
        raise UsageError("no artifact given; pass a model file, an .onnx, an engine or an export directory")
    selected = list(dict.fromkeys(runners))
    for r in selected:
        if r not in RUNNERS:
            raise UsageError(f"unknown runner {r!r}; use one of {', '.join(RUNNERS)}")
    exp = Expansion()
    for a in artifacts:
        path = Path(a)
        kind = artifact_kind(path)
        if kind == "export-dir":
            exp.targets += _expand_dir(path, selected, exp)
            continue
        rs = _runners_for(kind, selected)
        if not rs:
            raise UsageError(f"no given --runner runs {path} ({KIND_WORDS[kind]}); add --runner {_fitting(kind)}")
        if kind == "model":
            exp.targets += _model_targets(path, rs)
        elif kind == "onnx":
            exp.targets += _onnx_targets(path, rs, _beside(path), None, exp, explicit=True)
        else:
            exp.targets += _engine_targets(path, rs, _beside(path), None)
    if not exp.targets:
        reasons = "; ".join(f"{s.artifact}: {s.reason}" for s in exp.skipped[:2])
        raise UsageError(f"nothing to benchmark ({reasons}); pass artifacts a runner here can run")
    seen: dict[str, int] = {}
    unique = []
    for t in exp.targets:  # the same file twice (e.g. a dir and one of its files): keep labels apart
        n = seen.get(t.label, 0)
        seen[t.label] = n + 1
        unique.append(t if n == 0 else dataclasses.replace(t, label=f"{t.label}#{n + 1}"))
    exp.targets = unique
    return exp


# ----------------------------------------------------------------------------------------------- runners


def make_runner(target: Target, options: TargetOptions) -> Runner:
    """An unopened Runner for ``target``. Raises MissingDependencyError (TensorRT absent) / UsageError."""
    from segdeploy.runners import open_runner

    r = target.runner
    if target.kind == "model":
        from segdeploy.runners.torch import TorchOptions

        dev = RUNNERS[r][1]
        topts = TorchOptions(device=dev, trust_pickle=options.trust_pickle)
        if r.startswith("torch-compile"):
            from segdeploy.bench.compiled import CompiledTorchRunner

            return CompiledTorchRunner(str(target.artifact), topts)
        return open_runner(str(target.artifact), kind="torch", options=topts)
    if target.kind == "onnx":
        from segdeploy.runners.onnxruntime import OrtOptions

        device = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt"}[r]
        return open_runner(str(target.artifact), kind="onnxruntime", options=OrtOptions(
            device=device, graph_optimization_level=options.ort_opt_level, intra_op_num_threads=options.threads))
    from segdeploy.runners.tensorrt import TensorRTOptions

    plugin = options.plugin_library
    return open_runner(str(target.artifact), kind="tensorrt",
                       options=TensorRTOptions(plugin_library=plugin) if plugin else None)
