"""The C++ runtime's manifest reader, JSON parser, plan-header check, latency summary and CLI arguments
(segdeploy/runtime/cpp/src/{manifest,json,plan,stats}.cpp, tools/infer_args.cpp)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import rt_util
from segdeploy.manifest import onnx_profile_of, preprocess_of


def _fields(proc) -> dict[str, str]:
    return dict(line.split("=", 1) for line in proc.stdout.strip().splitlines())


def test_real_manifest(harness, export_dir, manifest_doc):
    f = _fields(harness.run("manifest", export_dir))  # the export directory is accepted too
    assert f == _fields(harness.run("manifest", export_dir / "manifest.json"))
    prof = onnx_profile_of(manifest_doc)
    pre = preprocess_of(manifest_doc)
    assert f["schema_version"] == str(manifest_doc["schema_version"])
    assert (f["input_name"], f["output_name"], f["output_dtype"]) == ("input", "logits", "float32")
    assert f["min"] == ",".join(map(str, prof.min)) and f["opt"] == ",".join(map(str, prof.opt))
    assert f["max"] == ",".join(map(str, prof.max)) and f["spatial_multiple"] == str(prof.spatial_multiple)
    assert [float(v) for v in f["mean"].split(",")] == list(pre.mean)
    assert [float(v) for v in f["std"].split(",")] == list(pre.std)
    assert float(f["scale"]) == pre.scale
    assert (f["channel_order"], f["resize"]) == (pre.channel_order, pre.resize)
    assert f["num_classes"] == "6" and f["class_names"] == "background,circle,square,triangle,ring,star"
    assert (f["has_plugin_graph"], f["engines"]) == ("0", "")


def test_plugin_graph_and_engines_sections(harness, manifest_doc, tmp_path):
    doc = copy.deepcopy(manifest_doc)
    doc["tensorrt_plugins"] = {"file": "model.trt.onnx", "nodes": []}
    engine = {"file": "model.fp16.engine", "sha256": "0" * 64, "precision": "fp16", "source_onnx": "model.trt.onnx",
              "tensorrt": {"version": "10.3.0.26", "plan_header": [10, 3, 0, 26]}}
    doc["engines"] = [dict(engine, plugins="libsegdeploy_trt_plugins.so"),
                      dict(engine, file="model.fp32.engine", precision="fp32", plugins=None),
                      dict(engine, file="model.int8.engine", precision="int8",
                           plugins={"library": "libsegdeploy_trt_plugins.so", "method": "registry.load_library"})]
    f = _fields(harness.run("manifest", rt_util.write_manifest(tmp_path / "m.json", doc)))
    assert (f["has_plugin_graph"], f["plugin_graph_file"]) == ("1", "model.trt.onnx")
    assert f["engines"].split(";") == ["model.fp16.engine|fp16|libsegdeploy_trt_plugins.so|10.3.0.26",
                                       "model.fp32.engine|fp32||10.3.0.26",
                                       "model.int8.engine|int8|libsegdeploy_trt_plugins.so|10.3.0.26"]


def _broken(doc: dict) -> dict[str, tuple[dict | str, str]]:
    def with_(path: str, value):
        d = copy.deepcopy(doc)
        keys = path.split(".")
        target = d
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if value is KeyError:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
        return d

    text = json.dumps(doc)
    return {
        "truncated JSON": (text[: len(text) // 2], "invalid JSON at line 1, column"),
        "not an object": ("[1, 2]", "is not a JSON object"),
        "other schema": (with_("schema", "other"), "is not a segdeploy manifest"),
        "newer schema": (with_("schema_version", 99), "schema version 99 is newer than this runtime understands"),
        "no preprocess": (with_("preprocess", KeyError), "lacks preprocess"),
        "std as text": (with_("preprocess.std", "0.2"), "preprocess.std must be an array, not string"),
        "std zero": (with_("preprocess.std", [0.2, 0.0, 0.2]), "preprocess.std values must be non-zero"),
        "mean/std count": (with_("preprocess.mean", [0.5, 0.5]), "preprocess.mean has 2 values but preprocess.std has 3"),
        "channel order": (with_("preprocess.channel_order", "GRB"), "preprocess.channel_order must be RGB or BGR"),
        "resize mode": (with_("preprocess.resize", "crop"), "preprocess.resize must be 'pad' or 'resize'"),
        "min > opt": (with_("inputs.0.profile.min", [1, 3, 256, 64]), "impossible shape profile on axis H"),
        "not a multiple": (with_("inputs.0.profile.opt", [1, 3, 120, 128]), "is not a multiple of 16 in H/W"),
        "3 dims": (with_("inputs.0.profile.max", [8, 256, 256]), "inputs[0].profile.max must hold 4 integers"),
        "float dim": (with_("inputs.0.profile.max", [8, 3, 256.0, 256]), "inputs[0].profile.max[2] must be an integer"),
        "class names": (with_("model.class_names", ["a", "b"]), "model.class_names lists 2 names for 6 classes"),
        "gray model": (with_("model.in_channels", 1), "the profile has 3 channels but model.in_channels is 1"),
        "int8 input": (with_("inputs.0.dtype", "int8"), "inputs[0].dtype is 'int8'; this runtime feeds float32"),
        "no inputs": (with_("inputs", []), "needs at least one input and one output"),
        "engines entry": (with_("engines", [{"file": "x.engine"}]), "lacks engines[0].precision"),
    }


def test_broken_manifests_give_one_line_errors(harness, manifest_doc, tmp_path):
    for name, (doc, expected) in _broken(manifest_doc).items():
        path = tmp_path / "broken.json"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        proc = harness.run("manifest", path, ok=False)
        assert proc.returncode == 1, (name, proc.stderr)
        err = proc.stderr
        assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, (name, err)
        assert expected in err, (name, err)
        assert "; " in err, (name, err)  # "<what failed>; <how to fix it>"
    missing = harness.run("manifest", tmp_path / "nowhere.json", ok=False)
    assert missing.returncode == 1 and "pass the manifest.json (or the export directory)" in missing.stderr


JSON_DOCS = [
    '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}',
    '{"k": "\\u00e9\\u4e2d\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\n\\r\\t", "raw": "d\u00e9j\u00e0 vu \u4e2d\U0001F600"}',
    '[0, -0, -0.0, 1e-05, 1E+300, 2.5e-324, 123456789012345678901234567890, -9223372036854775808, 9223372036854775807]',
    '[0.1, 0.2, 0.30000000000000004, 1.7976931348623157e308, 4.9e-324, 0.00392156862745098, 1e400, -1e400, 1e-400]',
    '{"nan": NaN, "inf": Infinity, "ninf": -Infinity}',
    '{"dup": 1, "dup": 2}',
    '  \n\t [ [ [ ] ] , { } ]  ',
    '"just a string"',
    '[' * 200 + ']' * 200,
]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_json_parser_agrees_with_python(harness, tmp_path):
    for i, text in enumerate(JSON_DOCS):
        path = tmp_path / f"doc{i}.json"
        path.write_text(text, encoding="utf-8")
        dumped = harness.run("json", path).stdout
        # integers beyond int64 are kept as the nearest double (documented in json.h)
        want = json.loads(text, parse_int=lambda t: int(t) if -2**63 <= int(t) < 2**63 else float(t))
        assert _same(json.loads(dumped), want), (text, dumped)


BAD_JSON = [
    ('{"a": 1,}', "line 1, column 9"), ('{"a" 1}', "expecting ':'"), ("[1 2]", "expecting ',' or ']'"),
    ('{"a": 01}', "expecting ',' or '}'"), ("[1] 2", "extra data"), ('"\\x"', "invalid escape"), ('"\\ud800"', "lone UTF-16 surrogate"),
    ('"tab\there"', "control character"), ("[1.]", "expecting a digit after '.'"), ("tru", "unexpected character"),
    ('{"a": [1, 2}', "expecting ',' or ']'"), ("[" * 600 + "]" * 600, "nested deeper than 512 levels"),
    ('{"a":\n  -}', "line 2, column 4"), ('"\xff"', "invalid UTF-8"), ("", "unexpected end of the document"),
]


# deliberate differences: Python accepts lone surrogates and (up to its recursion limit) deeper nesting
STRICTER_THAN_PYTHON = {'"\\ud800"', "[" * 600 + "]" * 600}


def test_json_errors(harness, tmp_path):
    for text, expected in BAD_JSON:
        path = tmp_path / "bad.json"
        path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
        proc = harness.run("json", path, ok=False)
        assert proc.returncode == 1 and expected in proc.stderr and proc.stderr.count("\n") == 1, (text, proc.stderr)
        if text not in STRICTER_THAN_PYTHON:
            with pytest.raises(ValueError):
                json.loads(path.read_bytes())


def test_plan_header(harness, tmp_path):
    plan = b"ftrt" + bytes(20) + bytes([10, 3, 0, 26]) + bytes(100)
    (tmp_path / "a.engine").write_bytes(plan)
    assert harness.run("plan", tmp_path / "a.engine").stdout.strip() == "10.3.0.26"
    (tmp_path / "b.engine").write_bytes(b"ftrt" + b"\x01\x00\x00\x00" + bytes(40))
    assert harness.run("plan", tmp_path / "b.engine").stdout.strip() == "unknown"
    meta = json.dumps({"description": "Ultralytics YOLO", "imgsz": [640, 640]}).encode()
    (tmp_path / "u.engine").write_bytes(len(meta).to_bytes(4, "little") + meta + plan)
    u = harness.run("plan", tmp_path / "u.engine", ok=False)
    assert u.returncode == 1 and f"strip its first {4 + len(meta)} bytes" in u.stderr
    onnx = harness.run("plan", rt_util.VAL_IMAGES[0], ok=False)
    assert onnx.returncode == 1 and "is not a serialized TensorRT plan (no 'ftrt' magic)" in onnx.stderr


def test_latency_summary_matches_numpy(harness):
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 10, 101):
        v = np.round(rng.exponential(3.0, n), 6)
        mean, p50, p90, lo, hi, count = harness.run("stats", *map(repr, v.tolist())).stdout.split()
        assert int(count) == n
        assert float(p50) == np.percentile(v, 50, method="inverted_cdf")
        assert float(p90) == np.percentile(v, 90, method="inverted_cdf")
        assert (float(lo), float(hi)) == (v.min(), v.max())
        assert math.isclose(float(mean), v.mean(), rel_tol=1e-12)


def test_cli_arguments(harness):
    ok = harness.run("args", "e.engine", "m.json", "in.png", "out.png", "--plugins", "lib.so", "--iterations=50", "--device", "1")
    assert ok.stdout.strip() == "e.engine|m.json|in.png|out.png|lib.so|50|1|1||-1"
    assert harness.run("args", "a", "b", "c", "d").stdout.strip() == "a|b|c|d||1|1|-1||-1"
    both = harness.run("args", "a", "b", "c", "d", "--compare", "ref.png", "--min-agreement=99.5")
    assert both.stdout.strip() == "a|b|c|d||1|1|-1|ref.png|99.5"
    assert harness.run("args", "--help").stdout.startswith("usage: segdeploy_infer ENGINE MANIFEST IMAGE OUT")
    for args, expected in [(["a", "b", "c"], "expected 4 arguments"), (["a", "b", "c", "d", "--iterations", "0"], "--iterations takes an integer >= 1"),
                           (["a", "b", "c", "d", "--fp16"], "unknown option --fp16"), (["a", "b", "c", "d", "--plugins"], "--plugins needs a value"),
                           (["a", "b", "c", "d", "--warmup=x"], "--warmup takes an integer >= 0"),
                           (["a", "b", "c", "d", "--min-agreement", "99"], "--min-agreement needs --compare"),
                           (["a", "b", "c", "d", "--compare", "r", "--min-agreement", "101"], "percentage in [0, 100]")]:
        proc = harness.run("args", *args, ok=False)
        assert proc.returncode == 2 and expected in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
