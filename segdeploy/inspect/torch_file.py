"""Inspecting a PyTorch file (``.pt2``, TorchScript, ``torch.save``) without unpickling or running anything.

Contract
--------
* :func:`archive_kind` names the format from the zip member names alone (``pt2``, ``torchscript``, ``pickle``);
  :mod:`segdeploy.load` detects formats with it, so ``inspect`` and ``export`` always agree.
* :func:`inspect_torch_file` reads the archive's central directory and small records only: a ``.pt2``'s layout
  is checked with :func:`segdeploy.safety.read_pt2_layout` (what the loader checks first), its program JSON
  (bounded by :func:`segdeploy.safety.check_json_record`) gives the example input shape with the dynamic
  dimensions and their ranges, the output shape and the parameter/buffer counts; a TorchScript archive or a
  ``torch.save`` file has its pickle walked opcode by opcode (:mod:`pickletools`, nothing is executed) for the
  tensors it stores and the Python objects it would import. ``safe_to_load`` says whether ``segdeploy export``
  loads the file without ``--trust-pickle`` and why. Nothing imports torch.
* An unreadable or malformed file is one :class:`~segdeploy.errors.ArtifactError` line.
"""

from __future__ import annotations

import io
import math
import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any

from segdeploy.errors import ArtifactError

PICKLE_RECORD_LIMIT = 256 << 20  # bytes of one data.pkl we walk (a whole-module pickle of a large model: a few MiB)
LEGACY_PICKLES = 5  # a legacy torch.save file: magic number, protocol, system info, the object, the storage keys
_TENSOR_GLOBALS = frozenset({"__builtin__.set", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                             "collections.OrderedDict", "torch._utils._rebuild_tensor", "torch.Size",
                             "torch.device", "torch._tensor._rebuild_from_type_v2", "torch.Tensor",
                             "torch.nn.parameter.Parameter", "builtins.set", "torch.serialization._get_layout"})


_TORCHSCRIPT_NAMES = ("__torch__.", "torch.jit._pickle.")  # TorchScript's own classes: resolved in the archive's code/


def archive_kind(names: list[str]) -> str | None:
    """``pt2``, ``torchscript`` or ``pickle`` from a PyTorch zip archive's member names; None for another zip."""
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "pt2"
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "pickle"
    return None


# ------------------------------------------------------------------------------------------- pickles


def _pushed(op: Any, arg: Any) -> tuple[str, Any] | None:
    if op.name in ("GLOBAL", "INST"):
        return ("global", ".".join(str(arg).split(" ", 1)))
    if isinstance(arg, str) and op.name.endswith(("UNICODE", "STRING", "BYTES8")):
        return ("str", arg)
    if isinstance(arg, int) and op.name.startswith(("BININT", "LONG", "INT")) and op.name not in ("BININT1_PUT",):
        return ("int", arg)
    return None


def _pickle_values(raw: bytes, pickles: int = 1) -> list[tuple[str, Any]]:
    """The strings, ints and globals the first ``pickles`` pickles in ``raw`` push, in order, with memo references
    resolved; other opcodes are ``("op", name)`` separators. Nothing is executed (:func:`pickletools.genops` only
    decodes)."""
    stream = io.BytesIO(raw)
    values: list[tuple[str, Any]] = []
    for _ in range(pickles):
        if stream.tell() >= len(raw):
            break
        values += _one_pickle(stream)
    return values


def _one_pickle(stream: io.BytesIO) -> list[tuple[str, Any]]:
    memo: dict[Any, tuple[str, Any]] = {}
    values: list[tuple[str, Any]] = []
    last: tuple[str, Any] = ("op", None)
    for op, arg, _ in pickletools.genops(stream):
        if op.name in ("MARK", "FRAME", "PROTO", "STOP"):
            continue
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = last
            continue
        if op.name == "MEMOIZE":
            memo[len(memo)] = last
            continue
        if op.name == "STACK_GLOBAL" and len(values) >= 2 and values[-1][0] == values[-2][0] == "str":
            last = ("global", f"{values[-2][1]}.{values[-1][1]}")
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            last = memo.get(arg, ("op", op.name))
        else:
            last = _pushed(op, arg) or ("op", op.name)
        values.append(last)
    return values


def scan_pickle(raw: bytes, pickles: int = 1) -> dict[str, Any]:
    """What a torch pickle holds: its storages (dtype, elements), the tensors it rebuilds and the other Python
    objects it would import when unpickled (``pickles``: how many pickles follow each other in ``raw``; a legacy
    torch.save file is five)."""
    try:
        values = _pickle_values(raw, pickles)
    except Exception as e:  # pickletools raises ValueError and friends on damaged data
        raise ArtifactError(f"its pickle is damaged ({' '.join(str(e).split())[:100]}); the file is truncated or "
                            "corrupt") from None
    storages: dict[str, tuple[str, int]] = {}
    for i in range(len(values) - 4):
        tag, kind, key, loc, numel = values[i:i + 5]
        if (tag == ("str", "storage") and kind[0] == "global" and kind[1].endswith("Storage")
                and key[0] == loc[0] == "str" and numel[0] == "int"):
            storages[key[1]] = (kind[1].rsplit(".", 1)[-1].removesuffix("Storage").lower(), int(numel[1]))
    globals_ = [v[1] for v in values if v[0] == "global"]
    foreign = sorted({g for g in globals_ if g not in _TENSOR_GLOBALS and not g.endswith("Storage")
                      and not g.startswith(_TORCHSCRIPT_NAMES)})
    tensors = sum(1 for g in globals_ if g.startswith("torch._utils._rebuild_tensor"))
    dtypes: dict[str, int] = {}
    for dtype, n in storages.values():
        dtypes[dtype] = dtypes.get(dtype, 0) + n
    return {"tensors": tensors, "elements": sum(n for _, n in storages.values()), "dtypes": dtypes, "imports": foreign}


def _read_member(z: zipfile.ZipFile, name: str, shown: str, limit: int) -> bytes:
    info = z.getinfo(name)
    if info.file_size > limit:
        raise ArtifactError(f"{shown}: member {name} declares {info.file_size} bytes, more than the {limit} segdeploy "
                            "reads; the file is not a model segdeploy can inspect")
    try:
        return z.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ArtifactError(f"{shown} is a corrupt or truncated archive ({e}); re-save or re-download it") from None


def _pickle_report(z: zipfile.ZipFile, names: list[str], shown: str, kind: str) -> dict[str, Any]:
    pkl = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
    try:
        scan = scan_pickle(_read_member(z, pkl, shown, PICKLE_RECORD_LIMIT))
    except ArtifactError as e:
        raise ArtifactError(f"{shown}: {e.message}") from None
    if kind == "torchscript":
        safe = {"safe": not scan["imports"], "why": "TorchScript: its code is TorchScript (compiled, no Python), its "
                "weights plain tensors" if not scan["imports"] else
                "its data.pkl names Python objects: " + ", ".join(scan["imports"][:6])}
        return {"format": "torchscript", "safe_to_load": safe, "weights": scan}
    if not scan["imports"]:
        return {"format": "state-dict", "weights": scan, "safe_to_load": {
            "safe": True, "why": "weights only (a state dict): load it with --model pkg.module:factory --weights FILE"}}
    return {"format": "pickle", "weights": scan, "safe_to_load": {
        "safe": False, "why": "unpickling imports and calls " + ", ".join(scan["imports"][:6])
        + (f" and {len(scan['imports']) - 6} more" if len(scan["imports"]) > 6 else "")
        + "; export needs --trust-pickle (only for a file you trust), or convert it once with torch.export.save"}}


# ------------------------------------------------------------------------------------------- .pt2


def _dim(d: dict[str, Any], ranges: dict[str, Any]) -> dict[str, Any]:
    if "as_int" in d:
        return {"size": int(d["as_int"])}
    expr = d.get("as_expr") or {}
    text = _sympy_text(str(expr.get("expr_str", "?")))
    out: dict[str, Any] = {"size": (expr.get("hint") or {}).get("as_int"), "dynamic": text}
    r = ranges.get(text)
    if isinstance(r, dict):
        out["range"] = [r.get("min_val"), r.get("max_val")]
    return out


def _sympy_text(expr: str) -> str:
    """``Mul(Integer(16), Symbol('s76', ...))`` -> ``16*s76`` (the names range_constraints uses); text only."""
    import re

    symbols = re.findall(r"Symbol\('([^']+)'", expr)
    coeff = re.match(r"Mul\(Integer\((\d+)\), Symbol\('[^']+'[^)]*\)\)$", expr)
    if coeff and len(symbols) == 1:
        return f"{coeff.group(1)}*{symbols[0]}"
    return symbols[0] if len(symbols) == 1 and expr.startswith("Symbol(") else expr[:80]


def _tensor_meta(graph: dict[str, Any], spec: dict[str, Any], ranges: dict[str, Any]) -> dict[str, Any] | None:
    arg = (spec.get("user_input") or spec.get("user_output") or {}).get("arg") or {}
    name = (arg.get("as_tensor") or {}).get("name")
    meta = (graph.get("tensor_values") or {}).get(name) if name else None
    if not isinstance(meta, dict):
        return None
    return {"name": name, "dims": [_dim(d, ranges) for d in meta.get("sizes") or []]}


def _weights_config(z: zipfile.ZipFile, root: str, shown: str) -> dict[str, Any]:
    from segdeploy.jsonio import parse as parse_json
    from segdeploy.safety import ArchiveError, check_json_record

    name = f"{root}/data/weights/model_weights_config.json"
    if name not in z.namelist():
        return {}
    raw = _read_member(z, name, shown, 1 << 30)
    try:
        check_json_record("data/weights/model_weights_config.json", raw)
    except ArchiveError as e:
        raise ArtifactError(f"{shown}: {e}; re-save the program with torch.export.save") from None
    entries = (parse_json(raw, max_bytes=1 << 30).get("config") or {}).values()
    counts = {"parameters": 0, "buffers": 0, "pickled": 0}
    for e in entries:
        sizes = (e.get("tensor_meta") or {}).get("sizes") or []
        n = math.prod(int(s.get("as_int", 0)) for s in sizes)
        counts["parameters" if e.get("is_param") else "buffers"] += n
        counts["pickled"] += bool(e.get("use_pickle"))
    return counts


def _program(z: zipfile.ZipFile, root: str, shown: str) -> dict[str, Any]:
    from segdeploy.jsonio import parse as parse_json
    from segdeploy.safety import ArchiveError, check_json_record

    name = f"{root}/models/model.json"
    if name not in z.namelist():
        return {"example_input": None, "outputs": []}
    raw = _read_member(z, name, shown, 1 << 30)
    try:
        check_json_record("models/model.json", raw)
        doc = parse_json(raw, max_bytes=1 << 30, max_depth=10_000)
    except (ArchiveError, ValueError) as e:
        raise ArtifactError(f"{shown}: its program record is not valid ({e}); re-save it with torch.export.save") from None
    gm = doc.get("graph_module") or {}
    graph, sig = gm.get("graph") or {}, gm.get("signature") or {}
    ranges = doc.get("range_constraints") or {}
    inputs = [_tensor_meta(graph, s, ranges) for s in sig.get("input_specs") or [] if "user_input" in s]
    outputs = [_tensor_meta(graph, s, ranges) for s in sig.get("output_specs") or [] if "user_output" in s]
    return {"user_inputs": len(inputs), "example_input": inputs[0] if inputs else None, "outputs": outputs,
            "output_type": _output_type(gm), "torch_version": doc.get("torch_version")}


_BUILTIN_CONTAINERS = frozenset({"builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
                                 "collections.namedtuple", "collections.defaultdict"})


def _output_type(gm: dict[str, Any]) -> str | None:
    """The Python type of the program's output as its pytree spec names it (None: a plain tensor)."""
    from segdeploy.jsonio import parse as parse_json

    calls = gm.get("module_call_graph") or []
    spec = ((calls[0] if calls else {}).get("signature") or {}).get("out_spec")
    try:
        tree = parse_json(spec, max_bytes=1 << 20) if isinstance(spec, str) else None
    except ValueError:
        return None
    node = tree[1] if isinstance(tree, list) and len(tree) == 2 and isinstance(tree[1], dict) else {}
    return node.get("type") if isinstance(node.get("type"), str) else None


def needs_registration(output_type: str | None) -> bool:
    """True when loading the program needs ``output_type`` registered with torch.utils._pytree by the loader."""
    return output_type is not None and output_type not in _BUILTIN_CONTAINERS


def _pt2_report(z: zipfile.ZipFile, data: bytes, shown: str) -> dict[str, Any]:
    from segdeploy.safety import ArchiveError, read_pt2_layout

    try:
        layout = read_pt2_layout(data)
    except ArchiveError as e:
        return {"format": "pt2", "safe_to_load": {"safe": False, "why": f"its layout is refused: {e}"}}
    report: dict[str, Any] = {"format": "pt2", **_program(z, layout.root, shown),
                              "weights": _weights_config(z, layout.root, shown)}
    if layout.has_aotinductor:
        why = "holds compiled AOTInductor libraries (loading them runs native code); export needs --trust-pickle"
    else:
        why = ("segdeploy loads it with its restricted loader (weights-only unpickling, generated code checked); "
               "no --trust-pickle needed")
    report["safe_to_load"] = {"safe": not layout.has_aotinductor, "why": why}
    return report


def inspect_torch_file(path: Path, data: bytes) -> dict[str, Any]:
    """The report of the PyTorch file ``data`` read from ``path`` (see the module docstring)."""
    shown = str(path)
    base = {"file": shown, "kind": "pytorch", "bytes": len(data)}
    if data[:1] == b"\x80":
        scan = scan_pickle(data, pickles=LEGACY_PICKLES)
        fmt = "state-dict" if not scan["imports"] else "pickle"
        return base | {"format": fmt, "legacy": True, "weights": scan, "safe_to_load": {
            "safe": fmt == "state-dict", "why": "a legacy (non-zip) torch.save file" + (
                "" if fmt == "state-dict" else ": unpickling imports " + ", ".join(scan["imports"][:6]))}}
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ArtifactError(f"{shown} is a corrupt or truncated archive ({e}); re-save or re-download it") from None
    kind = archive_kind(names)
    if kind is None:
        raise ArtifactError(f"{shown} is a zip archive but not a PyTorch file (no archive_format, code/ or data.pkl); "
                            "pass a .pt2, TorchScript or torch.save file")
    return base | (_pt2_report(z, data, shown) if kind == "pt2" else _pickle_report(z, names, shown, kind))


# ------------------------------------------------------------------------------------------- text

FORMAT_TEXT = {"pt2": "torch.export program (.pt2)", "torchscript": "TorchScript archive",
               "pickle": "pickled Python objects (torch.save of a module)", "state-dict": "state dict (weights only)"}


def _shape_text(meta: dict[str, Any] | None) -> str:
    if not meta:
        return "none recorded"
    dims = []
    for d in meta["dims"]:
        if "dynamic" not in d:
            dims.append(str(d["size"]))
        else:
            r = d.get("range")
            dims.append(f"{d['size']} ({d['dynamic']}" + (f" in {r[0]}..{r[1]})" if r else ")"))
    return f"{meta['name']} [" + ", ".join(dims) + "]"


def torch_text(r: dict[str, Any]) -> str:
    """The PyTorch file report as terminal lines."""
    safe = r["safe_to_load"]
    lines = [f"{os.path.basename(r['file'])}: {FORMAT_TEXT[r['format']]}" + (" (legacy format)" if r.get("legacy") else ""),
             f"  size:     {r['bytes'] / 2**20:.2f} MiB ({r['bytes']} bytes)",
             f"  safe to load: {'yes' if safe['safe'] else 'NO'}: {safe['why']}"]
    if r["format"] == "pt2" and "example_input" in r:
        lines.append(f"  example input: {_shape_text(r['example_input'])}")
        lines += [f"  output:   {_shape_text(o)}" for o in r.get("outputs") or []]
        if needs_registration(r.get("output_type")):
            lines.append(f"  output type: {r['output_type']}: `segdeploy export` cannot load it unless that type is "
                         "registered with torch.utils._pytree; re-export a wrapper whose forward returns the logits tensor")
        w = r.get("weights") or {}
        if w:
            lines.append(f"  weights:  {w['parameters']:,} parameters, {w['buffers']:,} buffer elements")
        if r.get("torch_version"):
            lines.append(f"  saved by: PyTorch {r['torch_version']}")
    elif "weights" in r:
        w = r["weights"]
        dt = ", ".join(f"{k} {v:,}" for k, v in w["dtypes"].items())
        lines.append(f"  tensors:  {w['tensors']} tensors, {w['elements']:,} elements stored (parameters and buffers"
                     + (f"; {dt})" if dt else ")"))
    return "\n".join(lines)
