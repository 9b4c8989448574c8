"""Model loading: model files and factories -> a module that returns one logits tensor.

Formats (detected from the file's contents, not its extension):

* ``torch.export`` programs (``.pt2``, ``torch.export.save``): first-class. The archive's layout and
  declared sizes are checked first (:func:`segdeploy.safety.read_pt2_layout`: ambiguous layouts and zip
  bombs are refused); then ``torch.export.load`` and ``ExportedProgram.module()`` run inside
  :func:`segdeploy.safety.restricted_pt2_load` unless ``trust_pickle=True``: whatever PyTorch would
  unpickle goes through its weights-only unpickler, opaque/custom objects and AOTInductor libraries are
  refused, and the Python PyTorch generates from the program (shape expressions, guards, ``forward``) may
  only do shape arithmetic and call PyTorch operators. A refusal is one UntrustedPickleError line naming
  the entry and ``--trust-pickle``. PyTorch's warnings and log records while loading are captured
  (:func:`segdeploy.safety.captured_diagnostics`) and summarised in ``notes`` or the error line.
  The program's own dynamic-shape constraints (e.g. ``16 * Dim("h")``) give the spatial multiple.
* TorchScript archives (``torch.jit.save``): safe to load (no pickled Python code).
* Whole pickled modules (``torch.save(model)``): unpickling runs arbitrary code, so they are refused
  unless ``trust_pickle=True`` (CLI ``--trust-pickle``).
* A factory ``pkg.module:callable`` returning an ``nn.Module``, with optional weights: a state-dict
  file (``.pt``/``.pth``, loaded with ``weights_only=True``) or ``.safetensors``. The module is imported
  and the factory called with network connections refused and the Hugging Face libraries offline
  (:func:`segdeploy.safety.no_downloads`) and ``os._exit`` trapped (:func:`segdeploy.safety.no_process_exit`):
  pretrained-weight downloads fail with the fix; any exception (SystemExit and ``os._exit`` included)
  becomes one ModelLoadError line naming the factory. Factory code itself is trusted code.

Output selection rule (documented in the README), unless ``output=NAME|INDEX`` overrides it:

1. a tensor is the output;
2. a mapping: key ``"out"`` (torchvision), else ``"logits"``, else its only 4-D tensor value;
3. an object with a ``.logits`` attribute (Hugging Face): that attribute;
4. a tuple/list (auxiliary heads): its first 4-D tensor element.

The selected output must be a 4-D ``[N, K, H, W]`` score map with H, W > 1; anything else (e.g. ``[N, C]``
classifier logits) is a :class:`~segdeploy.errors.ModelLoadError`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from segdeploy.errors import ModelLoadError, ShapeError, UntrustedPickleError, UsageError
from segdeploy.fsutil import sha256_bytes, sha256_file

FORMATS = ("pt2", "torchscript", "pickle", "factory", "module")


@dataclass
class LoadedModel:
    """A loaded model, ready for export and as the PyTorch reference.

    ``module`` returns a single logits tensor ``[N, K, H, W]`` (output selection applied) and is in eval
    mode. ``raw`` is the user's module as loaded (before output selection). ``format`` is one of FORMATS.
    ``source_sha256`` hashes the model file (plus weights file) or the factory spec.
    ``shape_hint`` is an example input shape when the file carries one (``.pt2``), else None.
    ``spatial_multiple_hint`` is the multiple declared by the file or the model, else None.
    ``spec`` is filled by :func:`segdeploy.export.probe.probe_model` (channels, classes, multiple).
    Output selection is resolved by :meth:`select_output` (it needs an example input).
    """

    module: nn.Module
    raw: Any
    format: str
    source: str
    source_sha256: str
    output_rule: str = "auto"
    shape_hint: tuple[int, ...] | None = None
    static_axes_hint: tuple[int, ...] = ()  # axes a .pt2 program was exported static on
    spatial_multiple_hint: int | None = None
    in_channels_hint: int | None = None
    notes: list[str] = field(default_factory=list)
    spec: Any = None

    def select_output(self, x: torch.Tensor) -> torch.Tensor:
        """Resolve the output selection with the example input ``x`` (no gradients) and return the selected output.

        Afterwards ``module`` returns the selected ``[N, K, H, W]`` logits (``raw`` wrapped in
        :class:`SelectOutput` unless the model already returns a tensor) and ``output_rule`` names the rule that
        chose it (``tensor``, ``dict['out']``, ``.logits``, ``tuple[0]`` ...). Raises ShapeError (the model fails
        on ``x``) or ModelLoadError (no segmentation map; ``--output`` names one)."""
        try:
            out = run_model(self.raw, x)
        except Exception as e:
            raise ShapeError(
                f"the model failed on an input of shape {list(x.shape)}: {_short(e)}; check the channel count and --shape"
            ) from None
        rule, selector = choose_output(out, None if self.output_rule == "auto" else self.output_rule)
        t = selector(out)
        check_segmentation_output(t, tuple(x.shape))
        self.output_rule = rule
        self.module = SelectOutput(self.raw, selector) if rule != "tensor" else self.raw
        return t

    def select_output_at(self, shape: tuple[int, int, int, int]) -> nn.Module:
        """:meth:`select_output` with a seeded random input of ``shape`` (N, C, H, W); returns :attr:`module`, the
        logits model (e.g. the PyTorch reference of a precision check at the manifest's opt shape)."""
        self.select_output(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))
        return self.module


class SelectOutput(nn.Module):
    """Wraps a model so that ``forward(x)`` returns the selected logits tensor."""

    def __init__(self, model: Any, selector: Callable[[Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self._selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._selector(self.model(x))


# ----------------------------------------------------------------------------- format detection


def _zip_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def detect_format(path: Path) -> str:
    """Return "pt2", "torchscript" or "pickle" for a model file; raise ModelLoadError otherwise."""
    if not path.exists():
        raise ModelLoadError(f"model file {path} not found; check the path")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory; pass a model file (.pt2, TorchScript or pickled module)")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file {path} is empty; re-save it with torch.export.save")
    names = _zip_names(path)
    if names is None:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":  # legacy (non-zip) pickle protocol marker
            return "pickle"
        if zipfile.is_zipfile(path) or head == b"PK":
            raise ModelLoadError(f"model file {path} is a corrupt or truncated archive; re-save or re-download it")
        raise ModelLoadError(
            f"{path} is not a PyTorch model file (not a torch.export/TorchScript/torch.save archive); "
            "save the model with torch.export.save"
        )
    from segdeploy.inspect.torch_file import archive_kind

    kind = archive_kind(names)
    if kind is not None:
        return kind
    raise ModelLoadError(f"model file {path} is a zip archive of unknown layout; save the model with torch.export.save")


# ----------------------------------------------------------------------------- loaders


def _load_pt2(path: Path, trust: bool) -> tuple[Any, tuple[int, ...] | None, int | None, list[str], tuple[int, ...]]:
    from segdeploy.safety import captured_diagnostics

    data = path.read_bytes()  # checked and loaded from the same bytes
    _check_pt2_layout(path, data, trust)
    with captured_diagnostics() as diag:
        ep, module = _read_program(path, data, trust, diag)
    notes: list[str] = []
    if diag.summary():
        notes.append(f"PyTorch said while loading {path.name}: {diag.summary()}")
    user_inputs = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        raise ModelLoadError(f"{path} takes {len(user_inputs)} inputs; segdeploy exports models with one image input")
    shape, multiple, static_axes = _input_constraints(ep, user_inputs[0])
    if multiple is not None and multiple > 1:
        notes.append(f"spatial multiple {multiple} read from the program's dynamic-shape constraints")
    return module, shape, multiple, notes, static_axes


def _check_pt2_layout(path: Path, data: bytes, trust: bool) -> None:
    """Refuse ambiguous archives and zip bombs (always) and compiled AOTInductor libraries (unless trusted)."""
    from segdeploy.safety import ArchiveError, read_pt2_layout

    try:
        layout = read_pt2_layout(data)
    except ArchiveError as e:
        raise ModelLoadError(f"{path} is not a well-formed torch.export archive: {e}; re-save the program with "
                             "torch.export.save") from None
    if layout.has_aotinductor and not trust:
        raise UntrustedPickleError(_runs_code(path, "data/aotinductor/ (compiled AOTInductor libraries: loading them "
                                                    "runs native code)"))


def _runs_code(path: Path, what: str) -> str:
    return (f"{path} holds content that runs code when loaded: {what}; pass --trust-pickle only if you trust the "
            "file, or re-save the program with torch.export.save from plain tensors")


def _read_program(path: Path, data: bytes, trust: bool, diag: Any) -> tuple[Any, Any]:
    """torch.export.load + ExportedProgram.module(), with every code-running sink restricted unless ``trust``."""
    import io

    from segdeploy.safety import Refused, UnrestrictableTorch, restricted_pt2_load

    guard = None
    try:
        with (contextlib.nullcontext() if trust else restricted_pt2_load()) as guard:
            try:
                ep = torch.export.load(io.BytesIO(data))
                module = ep.module()
            except Exception as e:  # torch raises many types for corrupt archives
                if guard is not None and guard.refusal is not None:
                    raise guard.refusal from None
                raise _program_load_error(path, diag.first_exception() or e, e) from None
    except UnrestrictableTorch as r:
        raise UntrustedPickleError(
            f"cannot load {path} safely with PyTorch {torch.__version__}: its .pt2 loader has changed where segdeploy "
            f"restricts it ({r.reason}); pass --trust-pickle only if you trust the file, or use a supported PyTorch"
        ) from None
    except Refused as r:
        raise UntrustedPickleError(_runs_code(path, str(r))) from None
    if guard is not None and guard.refusal is not None:  # a refusal that torch caught and carried on after
        raise UntrustedPickleError(_runs_code(path, str(guard.refusal)))
    return ep, module


_UNREGISTERED_PYTREE = re.compile(r"Deserializing (\S+) in pytree is not registered")


def _program_load_error(path: Path, cause: BaseException, raised: BaseException) -> ModelLoadError:
    """The one line for a program torch.export.load could not read; an output type that is not registered with
    pytree in this process (e.g. a Hugging Face ModelOutput) is named with its two fixes."""
    found = _UNREGISTERED_PYTREE.search(f"{cause} {raised}")
    if found:
        name = found.group(1).rstrip(".")
        return ModelLoadError(
            f"cannot load {path}: its output type {name} is not registered with torch.utils._pytree in this process; "
            "re-export a wrapper whose forward returns the logits tensor (torch.export.export(Wrapper(model), (x,))), "
            f"or from Python import the module that registers {name} before segdeploy.load_model")
    return ModelLoadError(f"cannot load torch.export program {path}: {_short(cause)}; re-save it with torch.export.save")


def _input_constraints(ep: Any, name: str) -> tuple[tuple[int, ...] | None, int | None, tuple[int, ...]]:
    """(example shape, spatial multiple, static axes) of the program's image input, from its placeholder."""
    for node in ep.graph.nodes:
        if node.op != "placeholder" or node.name != name or node.meta.get("val") is None:
            continue
        dims: list[int] = []
        mults: list[int | None] = []
        for d in node.meta["val"].shape:
            if isinstance(d, torch.SymInt):
                coeff, _ = d.node.expr.as_coeff_Mul()
                mults.append(int(coeff) if coeff.is_Integer else 1)
                hint = d.node.hint
                dims.append(int(hint) if hint is not None else -1)
            else:
                mults.append(None)
                dims.append(int(d))
        static_axes = tuple(i for i, m in enumerate(mults) if m is None)
        h, w = (mults[2], mults[3]) if len(mults) == 4 else (None, None)
        multiple = _lcm(h, w) if h is not None and w is not None else None
        return tuple(dims), multiple, static_axes
    return None, None, ()


def _load_torchscript(path: Path) -> Any:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelLoadError(f"cannot load TorchScript archive {path}: {_short(e)}; re-save it") from None


def _load_pickle(path: Path, trust: bool) -> Any:
    # First see whether it is plain data (a state dict): weights_only loading is safe.
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as e:
        if "weights_only" not in str(e) and "Unsupported global" not in str(e) and "GLOBAL" not in str(e):
            raise ModelLoadError(f"cannot read {path}: {_short(e)}; the file is corrupt or truncated") from None
        obj = None
    except (EOFError, zipfile.BadZipFile, OSError) as e:
        raise ModelLoadError(f"cannot read {path}: {_short(e)}; the file is corrupt or truncated") from None
    if obj is not None:
        state = _state_dict_in(obj)
        if state is not None:
            raise ModelLoadError(f"{path} holds weights (a state dict), not a model; {_factory_advice(state, path)}")
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a model; save the model with torch.export.save")
    if not trust:
        raise UntrustedPickleError(
            f"{path} is a pickled module: loading it runs arbitrary code from the file. If you trust it, pass "
            "--trust-pickle; better, convert it once with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelLoadError(f"cannot unpickle {path}: {_short(e)}; the classes it needs must be importable") from None
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(f"{path} unpickles to a {type(obj).__name__}, not an nn.Module")
    return obj


def _state_dict_in(obj: Any) -> dict[str, Any] | None:
    """The state dict ``obj`` is, or holds under ``"state_dict"`` (a training checkpoint), else None."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    return None


def _factory_advice(state: dict[str, Any], path: Path) -> str:
    """The fix for a state dict given as a model: the factory its keys identify, with the arguments they imply."""
    from segdeploy.factory_hints import suggest_factory

    hint = suggest_factory({k: tuple(v.shape) for k, v in state.items()})
    if hint is None:
        return f"pass --model pkg.module:factory --weights {path} (the factory that built the model)"
    also = f" and set {'; '.join(hint.missing)}" if hint.missing else ""
    return f"its keys are {hint.describe()}: give {hint.command(str(path))} instead of the file{also}"


def _load_factory(spec: str, weights: str | os.PathLike | None, kwargs: dict[str, Any] | None) -> tuple[nn.Module, list[str]]:
    """Import and call a ``pkg.module:factory`` spec under :func:`_factory_guard`; returns (model, notes)."""
    if ":" not in spec:
        raise UsageError(f"--model {spec!r} must be 'pkg.module:factory'")
    mod_name, attr = spec.split(":", 1)
    with _factory_guard(spec, f"importing {mod_name} for --model {spec}", "fix the module"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ModelLoadError(f"cannot import module {mod_name!r} for --model {spec}: {_short(e)}; check PYTHONPATH") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n, None)))[:20]
            raise ModelLoadError(
                f"unknown factory {attr!r} in module {mod_name}; callables there include: {', '.join(public)}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"{spec} is not callable; --model needs a function or class returning an nn.Module")
    with _factory_guard(spec, f"factory {spec}", "fix the factory or its --model-arg values") as diag:
        try:
            model = obj(**(kwargs or {}))
        except TypeError as e:
            raise ModelLoadError(f"calling factory {spec} failed: {_short(e)}; check its --model-arg values") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"factory {spec} returned a {type(model).__name__}, not an nn.Module")
    if weights is not None:
        _load_weights(model, Path(weights))
    notes = [f"{spec} said while loading: {diag.summary()}"] if diag.summary() else []
    return model, notes


@contextlib.contextmanager
def _factory_guard(spec: str, doing: str, fix: str) -> Iterator[Any]:
    """Run the user's factory code with downloads refused, ``os._exit`` trapped and warnings captured;
    every failure (SystemExit and os._exit included) becomes one ModelLoadError line naming ``doing``."""
    from segdeploy.safety import ProcessExit, captured_diagnostics, no_downloads, no_process_exit, offline_refusal

    with no_downloads() as attempts, no_process_exit(), captured_diagnostics() as diag:
        try:
            yield diag
        except (KeyboardInterrupt, ModelLoadError):
            raise
        except BaseException as e:  # noqa: BLE001 - an exit from factory code is a failure, not an exit
            host = attempts[0] if attempts else offline_refusal(e)
            if host:
                raise ModelLoadError(
                    f"factory {spec} tried to download weights (from {host}); segdeploy never downloads: pass "
                    "--model-arg encoder_weights=none (segmentation_models_pytorch) or weights=none (torchvision) and "
                    "your own --weights FILE"
                ) from None
            if isinstance(e, ProcessExit):
                raise ModelLoadError(f"{doing} called os._exit({e.code!r}) instead of returning a model; --model needs a "
                                     "function or class returning an nn.Module") from None
            if isinstance(e, SystemExit):
                raise ModelLoadError(f"{doing} called sys.exit({e.code!r}) instead of returning a model; "
                                     "--model needs a function or class returning an nn.Module") from None
            raise ModelLoadError(f"{doing} raised {type(e).__name__}: {_short(e)}; {fix}") from None


def _load_weights(model: nn.Module, path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"weights file {path} not found; check --weights")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - base dependency
            raise ModelLoadError("reading .safetensors needs the safetensors package: pip install safetensors") from None
        try:
            state = load_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"cannot read safetensors file {path}: {_short(e)}; the file is corrupt or truncated") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError,) as e:
            raise ModelLoadError(
                f"{path} is not a plain state dict (weights-only loading refused it: {_short(e)}); "
                "save weights with torch.save(model.state_dict(), path)"
            ) from None
        except Exception as e:
            raise ModelLoadError(f"cannot read weights {path}: {_short(e)}; the file is corrupt or truncated") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches raise even when strict=False
        first = next((l.strip() for l in str(e).splitlines() if "size mismatch" in l), _short(e))
        raise ModelLoadError(f"weights {path} do not match the model ({first}); check the factory arguments") from None
    if result.missing_keys or result.unexpected_keys:
        miss = ", ".join(result.missing_keys[:5])
        extra = ", ".join(result.unexpected_keys[:5])
        raise ModelLoadError(
            f"weights {path} do not match the model: {len(result.missing_keys)} missing ({miss}), "
            f"{len(result.unexpected_keys)} unexpected ({extra}); check the factory arguments"
        )


# ----------------------------------------------------------------------------- output selection


def _is_map(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4


def _describe(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"tensor {list(out.shape)}"
    if isinstance(out, dict):
        return "dict with keys " + ", ".join(f"{k}: {_describe(v)}" for k, v in out.items())
    if isinstance(out, (tuple, list)):
        return f"{type(out).__name__} of " + ", ".join(_describe(v) for v in out)
    return type(out).__name__


def choose_output(out: Any, override: str | None) -> tuple[str, Callable[[Any], torch.Tensor]]:
    """Apply the output selection rule to one example output; return (rule description, selector)."""
    if override is not None:
        key: Any = int(override) if override.lstrip("-").isdigit() else override
        if isinstance(out, dict):
            if key not in out:
                raise ModelLoadError(f"--output {override!r}: the model returns {_describe(out)}; pick one of its keys")
            return f"dict[{key!r}]", lambda o, k=key: o[k]
        if isinstance(out, (tuple, list)):
            if not isinstance(key, int) or not -len(out) <= key < len(out):
                raise ModelLoadError(f"--output {override!r}: the model returns {_describe(out)}; give an index 0..{len(out) - 1}")
            return f"{type(out).__name__}[{key}]", lambda o, k=key: o[k]
        if hasattr(out, str(key)):
            return f".{key}", lambda o, k=key: getattr(o, k)
        raise ModelLoadError(f"--output {override!r} does not apply: the model returns {_describe(out)}")
    if isinstance(out, torch.Tensor):
        return "tensor", lambda o: o
    if isinstance(out, dict):
        for k in ("out", "logits"):
            if k in out and isinstance(out[k], torch.Tensor):
                return f"dict[{k!r}]", lambda o, k=k: o[k]
        maps = [k for k, v in out.items() if _is_map(v)]
        if len(maps) == 1:
            return f"dict[{maps[0]!r}]", lambda o, k=maps[0]: o[k]
        raise ModelLoadError(f"the model returns {_describe(out)}; choose the segmentation output with --output NAME")
    if hasattr(out, "logits") and isinstance(getattr(out, "logits"), torch.Tensor):
        return ".logits", lambda o: o.logits
    if isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            if _is_map(v):
                return f"{type(out).__name__}[{i}]", lambda o, i=i: o[i]
        raise ModelLoadError(f"the model returns {_describe(out)} with no 4-D score map; choose one with --output INDEX")
    raise ModelLoadError(f"the model returns a {type(out).__name__}; segdeploy needs a [N, K, H, W] score map (see --output)")


def check_segmentation_output(t: Any, x_shape: tuple[int, ...]) -> None:
    """Raise ModelLoadError unless ``t`` is a [N, K, H, W] score map for an input of ``x_shape``."""
    if not isinstance(t, torch.Tensor):
        raise ModelLoadError(f"the selected output is a {type(t).__name__}, not a tensor; choose another with --output")
    if t.dim() != 4 or t.shape[2] <= 1 or t.shape[3] <= 1:
        raise ModelLoadError(
            f"the selected output has shape {list(t.shape)}: not a segmentation map [N, K, H, W] "
            "(classifier logits?); segdeploy exports per-pixel models — choose another output with --output"
        )
    if t.shape[0] != x_shape[0]:
        raise ModelLoadError(f"output batch {t.shape[0]} differs from input batch {x_shape[0]}; the output is not per-image")
    if not t.is_floating_point():
        raise ModelLoadError(f"the selected output has dtype {t.dtype}; segdeploy needs float scores, not class ids")


# ----------------------------------------------------------------------------- public API


@dataclass
class _Loaded:
    """What one way of loading found: the raw model, its format, source and hash, and the file's hints."""

    raw: Any
    format: str
    source: str
    sha256: str
    notes: list[str] = field(default_factory=list)
    shape_hint: tuple[int, ...] | None = None
    spatial_multiple_hint: int | None = None
    static_axes: tuple[int, ...] = ()


def _from_module(module: nn.Module) -> _Loaded:
    digest = sha256_bytes(repr(sorted((k, tuple(v.shape), float(v.float().sum()))
                                      for k, v in module.state_dict().items())).encode())
    return _Loaded(module, "module", type(module).__name__, digest)


def _from_factory(spec: str, weights: str | os.PathLike | None, kwargs: dict[str, Any] | None) -> _Loaded:
    raw, notes = _load_factory(spec, weights, kwargs)
    h = sha256_bytes(f"factory:{spec}:{sorted((kwargs or {}).items())}".encode())
    return _Loaded(raw, "factory", spec, sha256_bytes((h + (sha256_file(weights) if weights else "")).encode()), notes)


def _from_file(source: str | os.PathLike | None, weights: str | os.PathLike | None, trust_pickle: bool) -> _Loaded:
    if source is None:
        raise UsageError("no model given; pass a model file or --model pkg.module:factory")
    path = Path(source)
    fmt = detect_format(path)
    if weights is not None:
        raise UsageError("--weights applies only with --model pkg.module:factory; a model file carries its own weights")
    digest = sha256_file(path)
    if fmt == "pt2":
        raw, shape_hint, mult_hint, notes, static_axes = _load_pt2(path, trust_pickle)
        return _Loaded(raw, fmt, str(path), digest, notes, shape_hint, mult_hint, static_axes)
    from segdeploy.safety import captured_diagnostics

    with captured_diagnostics() as diag:  # e.g. torch.jit.load's deprecation warning: a note, not a dump
        raw = _load_torchscript(path) if fmt == "torchscript" else _load_pickle(path, trust_pickle)
    notes = ["loaded a pickled module because --trust-pickle was given"] if fmt == "pickle" else []
    if diag.summary():
        notes.append(f"PyTorch said while loading {path.name}: {diag.summary()}")
    return _Loaded(raw, fmt, str(path), digest, notes)


def load_model(
    source: str | os.PathLike | nn.Module | None = None,
    *,
    factory: str | None = None,
    weights: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    output: str | None = None,
    factory_kwargs: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a model from a file, a factory spec (``pkg.module:callable``) or an in-memory module.

    ``source`` may be a path, a ``pkg.module:factory`` string (when no such file exists), or an nn.Module.
    Output selection is resolved later by :meth:`LoadedModel.select_output` (it needs an example input); ``output``
    is stored for it. Raises ModelLoadError / UntrustedPickleError / UsageError with the fix.
    """
    if isinstance(source, nn.Module):
        got = _from_module(source)
    elif factory is not None or (isinstance(source, str) and is_factory_spec(source) and not Path(source).exists()):
        got = _from_factory(factory or str(source), weights, factory_kwargs)
    else:
        got = _from_file(source, weights, trust_pickle)
    raw = got.raw
    if isinstance(raw, torch.jit.ScriptModule) or (got.format != "pt2" and isinstance(raw, nn.Module)):
        raw.eval()  # a .pt2 program's module refuses eval(); it is already in inference form
    declared = getattr(raw, "spatial_multiple", None)
    if isinstance(declared, int) and declared > 0 and got.spatial_multiple_hint is None:
        got.spatial_multiple_hint = declared
        got.notes.append(f"spatial multiple {declared} declared by the model (attribute spatial_multiple)")
    return LoadedModel(
        module=raw,  # replaced by SelectOutput in LoadedModel.select_output
        raw=raw,
        format=got.format,
        source=got.source,
        source_sha256=got.sha256,
        output_rule=output or "auto",
        shape_hint=got.shape_hint,
        static_axes_hint=got.static_axes,
        spatial_multiple_hint=got.spatial_multiple_hint,
        in_channels_hint=_first_conv_channels(raw),
        notes=got.notes,
    )


def is_factory_spec(s: str) -> bool:
    """True for ``pkg.module:attr`` strings (dotted identifiers on both sides of one colon)."""
    mod, sep, attr = s.partition(":")
    return bool(sep) and all(p.isidentifier() for p in mod.split(".")) and all(p.isidentifier() for p in attr.split("."))


def _first_conv_channels(model: Any) -> int | None:
    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                return int(m.in_channels)
    except Exception:
        return None
    return None


def run_model(module: Any, x: torch.Tensor) -> Any:
    """Run ``module`` on ``x`` without gradients."""
    with torch.inference_mode():
        return module(x)


def _lcm(a: int, b: int) -> int:
    import math

    return a * b // math.gcd(a, b)


def _short(e: BaseException, limit: int = 200) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
