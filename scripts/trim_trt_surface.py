#!/usr/bin/env python3
"""Trim the recorded TensorRT Python API surface to what segdeploy's TensorRT tests need.

Input: the project's shared research file ``trt_python_api_surface.json`` (every class/enum and member of the
``tensorrt`` Python module per NVIDIA/TensorRT OSS tag, extracted from the pybind11 sources, with enum numeric
values from the C++ headers; a member ending in ``!D`` is wrapped with a deprecation warning).
Output: ``tests/trt/data/trt_api_surface.json`` -- the tags and classes below only, members sorted, enum values
keyed by the *Python* member name (the header's ``kFOO`` -> ``FOO``), dunder members of enums dropped. The tests'
stand-in module (``tests/trt/standin.py``) is generated from it, so the tests never read ../shared.

Known flattening in the input: ``Severity`` is listed as a top-level enum, but the bindings declare it inside
``ILogger`` (``py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity")`` with ``export_values()`` in
``python/src/infer/pyCore.cpp``); the output records that in ``nested`` and the stand-in follows the bindings.

Usage: python scripts/trim_trt_surface.py [--source PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "trt_python_api_surface.json"
DEFAULT_OUT = ROOT / "tests" / "trt" / "data" / "trt_api_surface.json"

# 8.6.1 (JetPack 6.0 ships 8.6.2; no OSS tag), 10.3.0 (JetPack 6.1/6.2), 10.13.3 (JetPack 7.0/7.1),
# the newest 10.x tag, and the newest 11.x tag.
VERSIONS = ("8.6.1", "10.3.0", "10.13.3", "10.16", "11.1")
CLASSES = (
    # builder side
    "Builder", "BuilderFlag", "NetworkDefinitionCreationFlag", "IBuilderConfig", "INetworkDefinition", "ITensor",
    "IOptimizationProfile", "ITimingCache", "IHostMemory", "MemoryPoolType", "DeviceType",
    "HardwareCompatibilityLevel", "OnnxParser", "OnnxParserFlag", "ParserError", "ErrorCode",
    "IInt8Calibrator", "IInt8EntropyCalibrator2", "CalibrationAlgoType",
    # plugins
    "IPluginRegistry", "IPluginV3", "IPluginCreatorV3One", "IPluginCreator", "IPluginCreatorInterface",
    # runtime side
    "Runtime", "ICudaEngine", "IExecutionContext", "TensorIOMode", "DataType", "TensorLocation",
    # logging
    "ILogger", "Logger", "Severity",
)
NESTED = {"Severity": ["ILogger", "Logger"]}


def trim(source: dict) -> dict:
    out_versions = {}
    for tag in VERSIONS:
        if tag not in source["versions"]:
            raise SystemExit(f"tag {tag} is not in the source surface (it has {', '.join(sorted(source['versions']))})")
        v = source["versions"][tag]
        classes = {}
        for name in CLASSES:
            entry = v["classes"].get(name)
            if entry is None:
                continue  # absent in this version: that absence is what the tests check
            members = sorted(entry["members"])
            if entry["kind"] == "enum":
                members = [m for m in members if not m.startswith("__")]
            classes[name] = {"kind": entry["kind"], "members": members}
        values = {}
        for enum, table in v.get("enum_values_from_headers", {}).items():
            if enum not in classes:
                continue
            py = {m.removesuffix("!D") for m in classes[enum]["members"]}
            values[enum] = {k[1:]: int(n) for k, n in sorted(table.items()) if k.startswith("k") and k[1:] in py}
        out_versions[tag] = {
            "classes": classes,
            "enum_values": values,
            "module_functions": sorted(v.get("module_functions", [])),
        }
    return {
        "_about": (
            "Trimmed by scripts/trim_trt_surface.py from the recorded Python API surface of NVIDIA/TensorRT's OSS "
            "bindings (pybind11 sources + C++ headers, Apache-2.0; facts only). Members ending in '!D' warn as "
            "deprecated. enum_values: header values keyed by Python member name; enums without recorded values "
            "have none here. 'nested': enums the bindings declare inside a class."
        ),
        "versions": out_versions,
        "nested": NESTED,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} not found; pass --source", file=sys.stderr)
        return 1
    doc = trim(json.loads(args.source.read_text()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    n = sum(len(v["classes"]) for v in doc["versions"].values())
    print(f"wrote {args.out} ({len(doc['versions'])} versions, {n} class entries, {args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
