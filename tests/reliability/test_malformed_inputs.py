"""Malformed inputs an attacker or a broken tool can hand us: hostile manifest file tables and values, JSON nested
100000 deep (manifest, shard report, label map), header-bomb images. Each is one ``error:`` line, a documented
exit code, no traceback and no change to a published directory."""

from __future__ import annotations

import io
import json
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import pytest

from rhelpers import one_error_line, run, snapshot
from segdeploy.errors import ArtifactError, DataError, UsageError

DEEP = b"[" * 100000 + b"]" * 100000


def header_bomb_png(path: Path | None, width: int = 100000, height: int = 100000) -> bytes:
    """A ~100-byte PNG whose header declares ``width`` x ``height`` RGB pixels (30 GB decoded at 100000^2)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


@pytest.fixture()
def images(tmp_path) -> Path:
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (32, 32), (20, 40, 60)).save(d / "a.png")
    return d


# ------------------------------------------------------------------------------------------ manifests


def _nul_name(doc):
    doc["files"]["model\x00.onnx"] = dict(doc["files"]["model.onnx"])


def _surrogate_name(doc):
    doc["files"]["model\ud800.onnx"] = dict(doc["files"]["model.onnx"])


def _unknown_kind(doc):
    doc["files"]["model.onnx"]["kind"] = "shellscript"


def _huge_classes(doc):
    doc["model"]["num_classes"] = 10**30


def _derived_from_missing(doc):
    doc["files"]["model.onnx"]["derived_from"] = {"ranges.json": "0" * 64}


def _deep(doc):
    return DEEP


MANIFEST_CASES = [
    (_nul_name, "is not a plain file name"),
    (_surrogate_name, "is not valid Unicode text"),
    (_unknown_kind, "kind 'shellscript' is not one of onnx,"),
    (_huge_classes, "model.num_classes must be in 1..65535"),
    (_derived_from_missing, "derived_from names 'ranges.json', which the file table does not list"),
    (_deep, "nested 100000 levels deep, more than the 64 allowed"),
]


def _damaged(src: Path, dst: Path, how) -> Path:
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    raw = how(doc)
    (dst / "manifest.json").write_bytes(raw if raw is not None else json.dumps(doc).encode())  # \u escapes: NUL, surrogate
    return dst


@pytest.mark.parametrize("how, match", MANIFEST_CASES, ids=[c[0].__name__.strip("_") for c in MANIFEST_CASES])
def test_every_reader_refuses_a_hostile_manifest(good_export, tmp_path, capsys, images, how, match):
    d = _damaged(good_export, tmp_path / "exp", how)
    before = snapshot(d)
    for argv in (["calibrate", d, "--calib", images, "-q"],
                 ["precision", d, "--model", "rmodels:tiny", "--fp16", "-q"],
                 ["check", "--model", "rmodels:tiny", "--candidate", d / "model.onnx", "--data", images, "-q"],
                 ["bundle", d, "--out", tmp_path / "bundle", "--samples", images, "-q"],
                 ["bench", d / "model.onnx", "-q"]):
        code, out, err = run(capsys, *argv)
        line = one_error_line(err)
        assert code == 1 and match in line, (argv[0], err)
        assert str(d / "manifest.json") in line, line
    assert snapshot(d) == before  # nothing republished, nothing staged beside it
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("how, match", MANIFEST_CASES[:-1], ids=[c[0].__name__.strip("_") for c in MANIFEST_CASES[:-1]])
def test_validator_refuses_what_it_used_to_republish(good_export, how, match):
    from segdeploy.manifest import validate_manifest

    doc = json.loads((good_export / "manifest.json").read_text())
    how(doc)
    with pytest.raises(ArtifactError, match=match) as ei:
        validate_manifest(doc, "m.json")
    assert "\n" not in ei.value.message and "\x00" not in ei.value.message
    ei.value.message.encode("utf-8")  # printable: a surrogate is shown escaped


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["inputs"][0]["profile"]["max"].__setitem__(2, 2**31), r"profile.max\[2\] must be in 1..2147483647"),
    (lambda d: d["model"].update(in_channels=0), "model.in_channels must be in 1.."),
    (lambda d: d["onnx"].update(opset=10**6), "onnx.opset must be in 1..99"),
    (lambda d: d["files"]["model.onnx"].update(bytes=-1), r"files\['model.onnx'\].bytes must be in 0.."),
    (lambda d: d["files"]["model.onnx"].update(sha256="Z" * 64), "must be a SHA-256 digest"),
    (lambda d: d["outputs"][0]["shape"].__setitem__(1, -3), r"outputs\[0\].shape has size -3"),
    (lambda d: d["files"].update({"..": d["files"]["model.onnx"]}), "is not a plain file name"),
    (lambda d: d["files"].update({"notes.txt": d["files"]["model.onnx"]}), "is not a plain file name"),
])
def test_numeric_and_name_bounds(good_export, mutate, match):
    from segdeploy.manifest import validate_manifest

    doc = json.loads((good_export / "manifest.json").read_text())
    mutate(doc)
    with pytest.raises(ArtifactError, match=match):
        validate_manifest(doc, "m.json")


def test_load_manifest_bytes_bounds_size_and_depth(good_export):
    from segdeploy.manifest import MAX_MANIFEST_BYTES, load_manifest_bytes

    raw = (good_export / "manifest.json").read_bytes()
    assert load_manifest_bytes(raw, "m.json")["files"]["model.onnx"]["kind"] == "onnx"
    with pytest.raises(ArtifactError, match="m.json is not usable JSON .nested 100000 levels deep"):
        load_manifest_bytes(DEEP, "m.json")
    with pytest.raises(ArtifactError, match="m.json is too large"):
        load_manifest_bytes(b" " * (MAX_MANIFEST_BYTES + 1), "m.json")
    with pytest.raises(ArtifactError, match=r"m.json is not valid JSON \(not UTF-8\)"):
        load_manifest_bytes(b'{"a": "\xff"}', "m.json")
    with pytest.raises(ArtifactError, match="m.json is not valid JSON"):
        load_manifest_bytes(b"1" * 5000, "m.json")  # Python's int-digits limit is a ValueError, not a traceback


def test_depth_scan_ignores_brackets_in_strings_and_stays_linear():
    from segdeploy.jsonio import JsonTooDeep, nesting_depth, parse

    assert parse(json.dumps({"s": "[" * 1000, "t": ['{"', "\\"]}).encode()) == {"s": "[" * 1000, "t": ['{"', "\\"]}
    assert nesting_depth(b'[["]]]]"], {"a": [1]}]') == 3
    with pytest.raises(JsonTooDeep):
        parse(b'["a\\\\"' + b"[" * 70 + b"]" * 71)
    # adversarial: millions of escaped quotes, unterminated -- one pass, not quadratic (would take hours)
    with pytest.raises(ValueError):
        parse(b'"\\"' * 2_000_000 + b"[" * 100)


# ------------------------------------------------------------------------------------- nested JSON


def test_nested_shard_report_is_one_line(tmp_path, capsys):
    p = tmp_path / "s0.json"
    p.write_bytes(DEEP)
    code, out, err = run(capsys, "merge", p, "--json")
    line = one_error_line(err)
    assert code == 1 and f"parity report {p} is not usable JSON (nested 100000 levels deep" in line
    doc = json.loads(out)
    assert doc["command"] == "merge" and doc["exit_code"] == 1 and doc["error"]["message"] == line[len("error: "):]


def test_nested_label_map_is_one_line(good_export, tmp_path, capsys, images):
    lm = tmp_path / "map.json"
    lm.write_bytes(DEEP)
    code, _, err = run(capsys, "check", "--model", "rmodels:tiny", "--candidate", good_export / "model.onnx",
                       "--data", images, "--masks", images, "--label-map", lm, "-q")
    line = one_error_line(err)
    assert code == 2 and f"label map {lm} is not usable JSON" in line and "--label-map" in line


def test_label_map_values_are_bounded():
    from segdeploy.datasets.masks import LabelMap

    with pytest.raises(UsageError, match="out of range"):
        LabelMap.parse("1:99999999999999999999")


def test_other_json_readers_are_bounded(tmp_path):
    from segdeploy.calibration.ranges_file import read_ranges_json
    from segdeploy.trt.plan import ultralytics_prefix

    p = tmp_path / "ranges.json"
    p.write_bytes(DEEP)
    with pytest.raises(ArtifactError, match="ranges file .* is not usable JSON"):
        read_ranges_json(p)
    prefix = b"[" * 5000 + b"]" * 5000
    assert ultralytics_prefix(len(prefix).to_bytes(4, "little") + prefix + b"ftrt") is None  # not a prefix, no crash


# ------------------------------------------------------------------------------------------- images


def _assert_bomb_line(line: str, path: Path) -> None:
    assert str(path) in line and "declares 10000000000 pixels" in line, line
    assert "limit of 67108864 pixels" in line and "SEGDEPLOY_MAX_IMAGE_PIXELS" in line, line


def test_header_bomb_in_check_data_and_masks(good_export, tmp_path, capsys, images):
    bomb = tmp_path / "bomb" / "a.png"
    header_bomb_png(bomb)
    code, _, err = run(capsys, "check", "--model", "rmodels:tiny", "--candidate", good_export / "model.onnx",
                       "--data", bomb.parent, "-q")
    assert code == 1
    _assert_bomb_line(one_error_line(err), bomb)
    masks = tmp_path / "masks"
    header_bomb_png(masks / "a.png")
    code, _, err = run(capsys, "check", "--model", "rmodels:tiny", "--candidate", good_export / "model.onnx",
                       "--data", images, "--masks", masks, "-q")
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"error: mask {masks / 'a.png'}")
    _assert_bomb_line(line, masks / "a.png")


def test_header_bomb_in_bundle_samples_and_calibrate(good_export, tmp_path, capsys):
    d = tmp_path / "exp"
    shutil.copytree(good_export, d)
    before = snapshot(d)
    bomb = tmp_path / "bomb" / "a.png"
    header_bomb_png(bomb)
    code, _, err = run(capsys, "bundle", d, "--out", tmp_path / "bundle", "--samples", bomb.parent, "-q")
    assert code == 1
    _assert_bomb_line(one_error_line(err), bomb)
    assert not (tmp_path / "bundle").exists()
    code, _, err = run(capsys, "calibrate", d, "--calib", bomb.parent, "-q")
    line = one_error_line(err)
    assert code == 1 and "a.png: declares 10000000000 pixels, above the 67108864 pixel limit" in line
    assert "SEGDEPLOY_MAX_IMAGE_PIXELS" in line
    assert snapshot(d) == before


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    from segdeploy.datasets import read_image
    from segdeploy.datasets.imagefile import ImageTooLargeError, open_image
    from segdeploy.datasets.masks import read_mask
    from PIL import Image

    p = tmp_path / "a.png"
    Image.new("L", (40, 30)).save(p)
    monkeypatch.setenv("SEGDEPLOY_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match=r"image .*a.png declares 40x30 = 1200 pixels, more than the limit of 1000"):
        read_image(p)
    with pytest.raises(DataError, match="mask .* declares 40x30"):
        read_mask(p)
    monkeypatch.setenv("SEGDEPLOY_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UsageError, match="SEGDEPLOY_MAX_IMAGE_PIXELS='lots' is not a pixel count"):
        read_image(p)
    # raised into Pillow's warning zone: the header is accepted, Pillow's DecompressionBombWarning is not shown
    monkeypatch.setenv("SEGDEPLOY_MAX_IMAGE_PIXELS", "178956970")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_image(io.BytesIO(header_bomb_png(None, 10000, 10000)), name="big") as im:
            assert im.size == (10000, 10000)
    assert not [w for w in caught if "DecompressionBomb" in w.category.__name__]


def test_report_class_map_bomb_is_an_artifact_error():
    import base64

    from segdeploy.parity.overlays import decode_png_b64

    with pytest.raises(ArtifactError, match="class map in the report declares 10000000000 pixels"):
        decode_png_b64(base64.b64encode(header_bomb_png(None)).decode())
