"""The C++ runtime's manifest reader (JSON through nlohmann-json), plan-header and host-code checks, latency summary
and CLI arguments (segdeploy/runtime/cpp/src/{manifest,plan,stats}.cpp, tools/infer_args.cpp)."""

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
    assert f["engines"].split(";") == ["model.fp16.engine|fp16|libsegdeploy_trt_plugins.so|10.3.0.26|0",
                                       "model.fp32.engine|fp32||10.3.0.26|0",
                                       "model.int8.engine|int8|libsegdeploy_trt_plugins.so|10.3.0.26|0"]


def test_end_to_end_section_gives_the_frame_order(harness, manifest_doc, tmp_path):
    """An export with --end-to-end: the runtime learns the frames' channel order (end_to_end.input.channel_order);
    a bad value is a one-line error."""
    assert _fields(harness.run("manifest", rt_util.write_manifest(tmp_path / "plain.json", manifest_doc)))[
        "has_end_to_end"] == "0"
    doc = copy.deepcopy(manifest_doc)
    doc["end_to_end"] = {"input": {"name": "image", "dtype": "uint8", "layout": "NHWC", "channel_order": "BGR"},
                         "variants": {}}
    f = _fields(harness.run("manifest", rt_util.write_manifest(tmp_path / "e2e.json", doc)))
    assert (f["has_end_to_end"], f["frame_order"]) == ("1", "BGR")
    doc["end_to_end"]["input"]["channel_order"] = "GRAY"
    bad = harness.run("manifest", rt_util.write_manifest(tmp_path / "bad.json", doc), ok=False)
    assert "end_to_end.input.channel_order must be RGB or BGR" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


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


# (text, what the one-line error says): nlohmann-json's reasons behind our "invalid JSON at line L, column C"
BAD_JSON = [
    ('{"a": 1,}', "invalid JSON at line 1, column 9: "), ('{"a" 1}', "expected ':'"), ("[1 2]", "expected ']'"),
    ("[1] 2", "expected end of input"), ('"\\x"', "forbidden character after backslash"),
    ('"\\ud800"', "surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF"), ("tru", "invalid literal"),
    ('{"a":\n  -}', "invalid JSON at line 2, column 4: "), ('"\xff"', "ill-formed UTF-8 byte, last read: '\"?'"),
    ("", "invalid JSON at line 1, column 1: "), ("[1e400]", "invalid JSON: number overflow"),
    ("[" * 100000 + "]" * 100000, "is not a JSON object"),  # deep nesting: parsed without recursion, then refused
    ("[1, 2]", "is not a JSON object"),
]


def test_json_errors(harness, tmp_path):
    for text, expected in BAD_JSON:
        path = tmp_path / "bad.json"
        path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
        proc = harness.run("manifest", path, ok=False)
        assert proc.returncode == 1 and expected in proc.stderr, (text[:40], proc.stderr)
        assert proc.stderr.startswith(f"error: {path}: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.isascii() and "re-run `segdeploy export`" in proc.stderr, proc.stderr


def test_python_json_quirks(harness, manifest_doc, tmp_path):
    """What Python's json module writes is read as Python reads it: NaN/Infinity outside the fields the runtime
    uses do not stop it (inside them the field's type check names it), the last of duplicate keys wins, strings
    with escapes and non-ASCII text decode to UTF-8."""
    doc = copy.deepcopy(manifest_doc)
    doc["verification"] = {"max_abs_diff": float("nan"), "bound": float("inf"), "low": float("-inf"), "note": "NaN Infinity"}
    doc["model"]["class_names"] = ["b\u00e4ckground", "c\"ircle", "squ\\are", "tri\tangle", "\u4e2d", "\U0001F600"]
    text = json.dumps(doc)
    assert "NaN" in text and "-Infinity" in text
    text = '{"schema": "another", "schema_version": 99, ' + text[1:]  # duplicates: the later (real) values win
    path = tmp_path / "m.json"
    path.write_text(text, encoding="utf-8")
    proc = harness.run("manifest", path)
    assert _fields(proc)["class_names"] == ",".join(doc["model"]["class_names"])  # json.dumps wrote them as escapes
    assert _fields(proc)["schema_version"] == "2"
    doc["preprocess"]["std"] = [0.2, float("nan"), 0.2]
    path.write_text(json.dumps(doc))
    bad = harness.run("manifest", path, ok=False)
    assert bad.returncode == 1 and "preprocess.std[1] must be a number, not null" in bad.stderr, bad.stderr


def test_version_compatible_engines_need_trust(harness, manifest_doc, tmp_path):
    """flags.builder of an engines entry (written by `segdeploy build`) says whether the plan carries host code; such
    an engine is refused before any GPU call unless host code is trusted, in one line naming --trust-host-code."""
    doc = copy.deepcopy(manifest_doc)
    base = {"sha256": "0" * 64, "source_onnx": "model.onnx", "tensorrt": {"version": "10.3.0.26"}}
    doc["engines"] = [dict(base, file="model.fp32.engine", precision="fp32", flags={"builder": ["VERSION_COMPATIBLE", "TF32"]}),
                      dict(base, file="model.fp16.engine", precision="fp16", flags={"builder": ["FP16"], "network": []}),
                      dict(base, file="model.int8.engine", precision="int8")]
    m = rt_util.write_manifest(tmp_path / "m.json", doc)
    assert _fields(harness.run("manifest", m))["engines"].split(";") == [
        "model.fp32.engine|fp32||10.3.0.26|1", "model.fp16.engine|fp16||10.3.0.26|0", "model.int8.engine|int8||10.3.0.26|0"]
    refused = harness.run("host-code", m, "model.fp32.engine", 0, ok=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "was built version-compatible" in refused.stderr and "pass --trust-host-code" in refused.stderr
    assert "SegmenterOptions::trust_host_code" in refused.stderr
    for engine, trust in [("model.fp32.engine", 1), ("model.fp16.engine", 0), ("model.int8.engine", 0), ("other.engine", 0)]:
        assert harness.run("host-code", m, engine, trust).stdout.strip() == "ok"
    doc["engines"][0]["flags"] = {"builder": "VERSION_COMPATIBLE"}
    bad = harness.run("manifest", rt_util.write_manifest(tmp_path / "b.json", doc), ok=False)
    assert bad.returncode == 1 and "engines[0].flags.builder must be an array, not string" in bad.stderr


def test_deserialize_failure_hints(harness):
    """What a failed deserialization tells the user: --trust-host-code where TensorRT's log or a version mismatch
    points at a version-compatible plan, the plugin option, else rebuild on this device."""
    def hint(log, plan, runtime, plugins=0, trust=0):
        return harness.run("failure-hint", log or "", plan, runtime, plugins, trust).stdout.strip()

    vc_log = "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (engine host code is not allowed)"
    assert "pass --trust-host-code" in hint(vc_log, "10.3.0.26", "10.3.0") and "version-compatible" in hint(vc_log, "-", "10.3.0")
    assert "--trust-host-code" not in hint(vc_log, "10.3.0.26", "10.3.0", trust=1)
    other = hint("Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed", "10.3.0.26", "10.16.0")
    assert "built by TensorRT 10.3.0.26 but this runtime uses TensorRT 10.16.0" in other and "rebuild the engine" in other
    assert "if it was built version-compatible, pass --trust-host-code" in other
    trusted = hint("Serialization assertion failed", "10.16.0.1", "10.3.0", trust=1)
    assert "only on the same or a newer TensorRT" in trusted and "--trust-host-code" not in trusted
    assert "pass the plugin library" in hint("getPluginCreator could not find plugin MaxUnpool", "10.3.0.26", "10.3.0")
    assert "rebuild it on this device" in hint("", "10.3.0.26", "10.3.0")


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
    assert ok.stdout.strip() == "e.engine|m.json|in.png|out.png|lib.so|50|1|1||-1|0"
    assert harness.run("args", "a", "b", "c", "d").stdout.strip() == "a|b|c|d||1|1|-1||-1|0"
    both = harness.run("args", "a", "b", "c", "d", "--compare", "ref.png", "--min-agreement=99.5", "--trust-host-code")
    assert both.stdout.strip() == "a|b|c|d||1|1|-1|ref.png|99.5|1"
    assert harness.run("args", "--trust-host-code", "a", "b", "c", "d").stdout.strip() == "a|b|c|d||1|1|-1||-1|1"
    usage = harness.run("args", "--help").stdout
    assert usage.startswith("usage: segdeploy_infer ENGINE MANIFEST IMAGE OUT") and "--trust-host-code" in usage
    for args, expected in [(["a", "b", "c"], "expected 4 arguments"), (["a", "b", "c", "d", "--iterations", "0"], "--iterations takes an integer >= 1"),
                           (["a", "b", "c", "d", "--fp16"], "unknown option --fp16"), (["a", "b", "c", "d", "--plugins"], "--plugins needs a value"),
                           (["a", "b", "c", "d", "--warmup=x"], "--warmup takes an integer >= 0"),
                           (["a", "b", "c", "d", "--min-agreement", "99"], "--min-agreement needs --compare"),
                           (["a", "b", "c", "d", "--compare", "r", "--min-agreement", "101"], "percentage in [0, 100]"),
                           (["a", "b", "c", "d", "--trust-host-code=1"], "--trust-host-code takes no value")]:
        proc = harness.run("args", *args, ok=False)
        assert proc.returncode == 2 and expected in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
