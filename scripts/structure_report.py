#!/usr/bin/env python
"""The package's structure, measured: imports between packages, cycles, upward imports, manifest reads outside
the owner, re-spelled artifact names, long functions. Prints JSON; ``tests/test_structure.py`` asserts on it.

    python scripts/structure_report.py            # JSON on stdout
    python scripts/structure_report.py --brief    # counts only

Layers (:data:`LAYERS`, lowest first) are the one statement of who may import whom: a module may import its
own package, and packages of its own or a lower layer. ``segdeploy.<pkg>.cli`` modules (the click commands)
belong to the top layer whatever their package, since a command composes stages. Imports inside functions
count the same as top-level ones (a lazy import is still a dependency).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a package may import packages of its own layer or below (never a cycle)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("segdeploy", "errors", "vocab", "jsonio", "spec", "safefs", "fsutil", "usercache", "progress", "manifest",
     "exportdir", "result"),
    ("datasets", "safety", "platform", "zoo", "trt", "plugins", "metrics"),
    ("load", "runners", "evaluation", "inspect", "factory_hints"),
    ("export", "calibration", "parity"),
    ("precision",),
    ("engine",),
    ("pipeline", "bundle", "bench", "doctor"),
    ("cli", "cli_options", "__main__"),  # plus every segdeploy.<pkg>.cli module
)
CLI_LAYER = len(LAYERS) - 1

# the owner of manifest keys and file names (a package owns through all its modules)
MANIFEST_OWNERS = ("segdeploy.manifest", "segdeploy.exportdir", "segdeploy.vocab")
MANIFEST_KEYS = frozenset({"source", "model", "inputs", "outputs", "static_axes", "preprocess", "onnx", "rewrites", "verification", "versions", "files",
                           "profile_narrowed", "profile_source", "tensorrt_plugins", "calibration", "precision", "engines"})
MANIFEST_HOLDERS = frozenset({"manifest", "doc", "man", "m"})  # names that hold a manifest document in this code base
ARTIFACT_NAMES = frozenset({"manifest.json", "model.onnx", "model.trt.onnx", "model.fp16.onnx", "model.int8.onnx",
                            "ranges.json", "model.calib.cache"})
LONG_FUNCTION = 60


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for p in sorted((root / "segdeploy").rglob("*.py")):
        parts = p.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 and parts[-1] == "cli":
        return "cli"  # segdeploy.<pkg>.cli: a command
    return parts[1] if len(parts) > 1 else "segdeploy"


def layer_of(package: str) -> int:
    for i, names in enumerate(LAYERS):
        if package in names:
            return i
    raise KeyError(f"package {package!r} is in no layer of scripts/structure_report.py; add it to LAYERS")


def _imports(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                tgt = ".".join(base + ([node.module] if node.module else []))
            else:
                tgt = node.module or ""
            targets = [tgt] + [f"{tgt}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != module and t.startswith("segdeploy"):
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def _manifest_reads(module: str, path: Path) -> list[str]:
    """``manifest["model"]`` / ``doc.get("files")``-style reads of manifest keys (outside the owner)."""
    hits = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        key = holder = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key, holder = node.slice.value, node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop",
              "setdefault") and node.args and isinstance(node.args[0], ast.Constant)):
            key, holder = node.args[0].value, node.func.value
        if key not in MANIFEST_KEYS or holder is None:
            continue
        name = holder.attr if isinstance(holder, ast.Attribute) else holder.id if isinstance(holder, ast.Name) else None
        if name in MANIFEST_HOLDERS:
            hits.append(f"{module}:{node.lineno} {name}[{key!r}]")
    return hits


def _is_owner(module: str) -> bool:
    """A manifest owner or a module of an owner package (segdeploy.exportdir.view)."""
    return any(module == o or module.startswith(o + ".") for o in MANIFEST_OWNERS)


def _artifact_literals(module: str, path: Path) -> list[str]:
    """String constants that are exactly an artifact file name (outside segdeploy.vocab)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{module}:{n.lineno} {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in ARTIFACT_NAMES]


def _long_functions(module: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.end_lineno - n.lineno + 1, f"{module}:{n.name}") for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > LONG_FUNCTION]


def report(root: Path = ROOT) -> dict:
    mods = modules(root)
    edges = {m: _imports(m, p, mods) for m, p in mods.items()}
    pkg_edges: dict[str, set[str]] = defaultdict(set)
    upward = []
    for m, targets in edges.items():
        a = package_of(m)
        for t in targets:
            b = package_of(t)
            if a == b:
                continue
            pkg_edges[a].add(b)
            if layer_of(b) > layer_of(a):
                upward.append(f"{m} -> {t} ({a} is layer {layer_of(a)}, {b} layer {layer_of(b)})")
    manifest_reads = [h for m, p in mods.items() if not _is_owner(m) for h in _manifest_reads(m, p)]
    literals = [h for m, p in mods.items() if m != "segdeploy.vocab" for h in _artifact_literals(m, p)]
    long = sorted((f for m, p in mods.items() for f in _long_functions(m, p)), reverse=True)
    return {
        "modules": len(mods),
        "module_cycles": _cycles(edges),
        "package_cycles": _cycles(pkg_edges),
        "upward_imports": sorted(upward),
        "manifest_reads_outside_owner": manifest_reads,
        "artifact_name_literals_outside_vocab": literals,
        f"functions_over_{LONG_FUNCTION}_lines": [f"{n} {f}" for n, f in long],
        "package_imports": {k: sorted(v) for k, v in sorted(pkg_edges.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--brief", action="store_true", help="counts only")
    args = ap.parse_args(argv)
    rep = report(args.root)
    if args.brief:
        rep = {k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in rep.items()}
    json.dump(rep, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
