"""HTML parity report: structure (parses, bars per class, overlays decode, text escaped, self-contained),
verdicts, error paths, and a real headless-browser render (Debian's chromium; skipped when absent)."""

from __future__ import annotations

import base64
import copy
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from segdeploy.datasets import shapes
from segdeploy.errors import ArtifactError
from segdeploy.parity.check import CheckOptions, run_check
from segdeploy.parity.gate import GateOptions
from segdeploy.parity.html_report import class_iou_svg, render_html_report, write_html_report
from segdeploy.parity.overlays import (
    CHANGED_RGB,
    GAINED_RGB,
    LOST_RGB,
    class_map_png_b64,
    class_palette,
    colorize,
    decode_png_b64,
    disagreement_counts,
    disagreement_map,
    png_bytes,
    render_strip,
)

K = shapes.NUM_CLASSES


class ColourSeg(nn.Module):
    """Random-init 3 -> K conv net (fixed seed): enough structure for non-trivial class maps."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, 5, padding=2)
        self.b = nn.Conv2d(12, K, 3, padding=1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _export(model: nn.Module, path: Path) -> str:
    dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes=dyn, dynamo=False)
    return str(path)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """A labelled check: reference module vs an ONNX candidate whose class-2 bias drifted (so it differs)."""
    root = tmp_path_factory.mktemp("html")
    shapes.write_split(root / "val", 4, "val", size=(64, 64))
    torch.manual_seed(0)
    ref = ColourSeg().eval()
    drifted = copy.deepcopy(ref)
    with torch.no_grad():
        drifted.b.bias[2] += 0.4
    cand = _export(drifted, root / "cand.onnx")
    opts = CheckOptions(worst_k=3, class_names=shapes.CLASS_NAMES, gate=GateOptions(max_miou_drop=0.5))
    res = run_check(ref, cand, root / "val" / "images", root / "val" / "masks", options=opts,
                    command="segdeploy check --reference ref.pt2 --candidate cand.onnx --data val/images")
    return res.report, root


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Collector:
    p = _Collector()
    p.feed(text)
    p.close()
    return p


def test_structure_bars_overlays_self_contained(checked, tmp_path):
    report, _ = checked
    out = write_html_report(report, tmp_path / "r.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    doc = _parse(text)
    tags = doc.tags
    # per-class bars: one row per class; a ref and a cand bar for every class with a defined IoU
    rows = [a for t, a in tags if t == "g" and "class-row" in a.get("class", "")]
    assert [int(a["data-class"]) for a in rows] == list(range(K))
    ref_iou = report["metrics"]["reference"]["per_class_iou"]
    cand_iou = report["metrics"]["candidate"]["per_class_iou"]
    n_ref = sum(1 for t, a in tags if t == "rect" and a.get("class") == "bar ref")
    n_cand = sum(1 for t, a in tags if t == "rect" and a.get("class") == "bar cand")
    assert n_ref == sum(v is not None for v in ref_iou) and n_cand == sum(v is not None for v in cand_iou)
    assert n_ref > 0
    # every class name appears (bars + legend)
    body = "".join(doc.text)
    for name in shapes.CLASS_NAMES:
        assert name in body
    # overlays: one card per worst image, 5 panels each (image, truth, ref, cand, disagreement), all decodable PNGs
    cards = [a for t, a in tags if t == "article"]
    assert [a["data-stem"] for a in cards] == [w["stem"] for w in report["worst_images"]]
    imgs = [a for t, a in tags if t == "img"]
    assert len(imgs) == 5 * len(cards) and len(cards) == 3
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1])))
        im.load()
        assert im.size == (int(a["width"]), int(a["height"])) == (64, 64)
    assert [a["data-panel"] for a in imgs[:5]] == ["image", "ground truth", "reference", "candidate", "disagreement"]
    # self-contained: nothing to fetch (no scripts, no external src/href, no url() in CSS)
    assert not any(t in ("script", "link", "iframe") for t, _ in tags)
    for t, a in tags:
        for key in ("src", "href"):
            if key in a:
                assert a[key].startswith(("data:", "#")), (t, a)
    assert "url(" not in text and "@import" not in text
    # the gate verdict and the command line are shown
    verdict = next(a for t, a in tags if a.get("id") == "verdict")
    assert verdict is not None
    assert ("PASS" in body) != ("FAIL" in body)
    assert "segdeploy check --reference ref.pt2" in body


def test_text_is_escaped(checked, tmp_path):
    report, _ = checked
    evil = copy.deepcopy(report)
    payload = '<script>alert("x")</script>&'
    evil["command"] = payload
    evil["classes"]["names"] = [payload] + list(shapes.CLASS_NAMES[1:])
    evil["notes"] = [payload]
    evil["errors"] = [{"stem": payload, "path": "p", "kind": "data", "message": payload}]
    evil["worst_images"][0]["stem"] = payload
    text = render_html_report(evil)
    assert "<script" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in text
    doc = _parse(text)
    assert not any(t == "script" for t, _ in doc.tags)
    assert sum(payload in s for s in doc.text) >= 4  # decoded back to the literal text, shown not executed


def test_verdicts(checked):
    report, _ = checked
    r = copy.deepcopy(report)
    r["gate"] = {"thresholds": {"max_miou_drop_points": 0.5}, "evaluated": True, "passed": False,
                 "failures": ["mIoU dropped 3.10 points > budget 0.50"]}
    t = render_html_report(r)
    assert 'class="verdict fail"' in t and "mIoU dropped 3.10 points &gt; budget 0.50" in t
    r["gate"] = {"thresholds": {}, "evaluated": False, "passed": None, "failures": []}
    assert 'class="verdict ungated"' in render_html_report(r)
    r["gate"] = {"thresholds": {"max_miou_drop_points": 50}, "evaluated": True, "passed": True, "failures": []}
    assert 'class="verdict pass"' in render_html_report(r)
    r["partial"], r["shard"] = True, {"index": 0, "count": 2}
    assert 'class="verdict partial"' in render_html_report(r)


def test_unlabelled_mode_and_missing_image(checked, tmp_path):
    report, root = checked
    torch.manual_seed(0)
    ref = ColourSeg().eval()
    res = run_check(ref, _export(ref, tmp_path / "same.onnx"), root / "val" / "images",
                    options=CheckOptions(worst_k=2))
    rep = res.report
    assert rep["mode"] == "unlabelled"
    rep["worst_images"][0]["image"] = str(tmp_path / "gone.png")
    text = render_html_report(rep)
    doc = _parse(text)
    rows = [a for t, a in doc.tags if t == "g" and "class-row" in a.get("class", "")]
    assert len(rows) == rep["classes"]["num_classes"]
    assert not any(t == "rect" and a.get("class") == "bar ref" for t, a in doc.tags)  # no ground truth
    imgs = [a for t, a in doc.tags if t == "img"]
    assert len(imgs) == 4 * 2  # image, ref, cand, disagreement
    assert "image (not found)" in "".join(doc.text) and "gone.png" in "".join(doc.text)


def test_write_errors_leave_nothing(checked, tmp_path):
    report, _ = checked
    out = tmp_path / "r.html"
    with pytest.raises(ArtifactError, match="not a segdeploy parity report"):
        write_html_report({"schema": "other"}, out)
    assert not out.exists()
    write_html_report(report, out)
    good = out.read_bytes()
    bad = copy.deepcopy(report)
    bad["worst_images"][0]["reference_png"] = "not base64 png!"
    with pytest.raises(ArtifactError, match="not a valid base64 PNG") as ei:
        write_html_report(bad, out)
    assert "\n" not in str(ei.value)
    assert out.read_bytes() == good  # the good report is not overwritten
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temp file left behind
    with pytest.raises(ArtifactError, match="is a directory"):
        write_html_report(report, tmp_path)


def test_overlay_primitives():
    pal = class_palette()
    assert pal.shape == (256, 3) and tuple(pal[1]) == (128, 0, 0) and tuple(pal[0]) == (0, 0, 0)
    cm = np.array([[0, 1], [2, -1]])
    col = colorize(cm)
    assert tuple(col[0, 1]) == (128, 0, 0) and tuple(col[1, 1]) == (255, 0, 255)
    img = np.full((2, 2, 3), 100, np.uint8)
    ref = np.array([[0, 1], [1, 1]])
    cand = np.array([[0, 2], [0, 1]])
    gt = np.array([[0, 1], [0, 255]])
    d = disagreement_map(img, ref, cand, gt)
    assert tuple(d[0, 1]) == LOST_RGB and tuple(d[1, 0]) == GAINED_RGB
    d2 = disagreement_map(img, ref, cand)
    assert tuple(d2[0, 1]) == CHANGED_RGB == tuple(d2[1, 0])
    assert disagreement_counts(ref, cand, gt) == {"changed": 2, "lost": 1, "gained": 1}
    assert png_bytes(d) == png_bytes(d.copy())  # deterministic
    cmap = np.random.default_rng(0).integers(-1, 255, (17, 23))  # classes 0..254 and the invalid marker -1
    assert np.array_equal(decode_png_b64(class_map_png_b64(cmap)), cmap)  # lossless class ids
    assert class_map_png_b64(np.array([[0, 300]])) is None
    assert class_map_png_b64(np.array([[0, 255]])) is None  # index 255 is the invalid marker's
    big = np.zeros((1000, 500), np.int64)
    panels = render_strip(np.zeros((1000, 500, 3), np.uint8), big, big, max_side=200)
    assert [(p.width, p.height) for p in panels] == [(100, 200)] * 4


def test_sparse_disagreement_is_framed():
    img = np.full((48, 48, 3), 100, np.uint8)
    ref = np.zeros((48, 48), np.int64)
    cand = ref.copy()
    cand[20, 30] = 1
    d = disagreement_map(img, ref, cand, ref)  # truth == reference: the candidate lost that pixel
    r = 3  # max(3, 48 // 24)
    assert tuple(d[20, 30]) == LOST_RGB
    assert tuple(d[20 - r, 30]) == LOST_RGB and tuple(d[20, 30 + r]) == LOST_RGB  # the frame
    assert tuple(d[20, 31]) == tuple(d[0, 0]) != LOST_RGB  # inside the frame and far away: plain grey
    assert disagreement_counts(ref, cand, ref) == {"changed": 1, "lost": 1, "gained": 0}
    dense = ref.copy()
    dense[:10, :10] = 1  # 100 pixels: no frames, exact extent
    dd = disagreement_map(img, ref, dense)
    assert (np.all(dd[:10, :10] == CHANGED_RGB, axis=-1)).all() and tuple(dd[10, 10]) == tuple(dd[40, 40])


def test_svg_bars_absent_classes():
    svg = class_iou_svg(["a", "b<&>"], [0.5, None], [0.25, None], [25.0, None])
    assert svg.count('class="bar ref"') == 1 and svg.count('class="bar cand"') == 1
    assert svg.count(">absent<") == 2 and "b&lt;&amp;&gt;" in svg and "+25.00 pts" in svg


def _load_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"
    spec = importlib.util.spec_from_file_location("screenshot_report", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CHROMIUM = _load_script().find_browser(None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium) -- browser render not checked")
def test_renders_in_headless_chromium(checked, tmp_path, capsys):
    """The documented script: JSON report -> HTML -> Chromium screenshot; then look at the pixels."""
    from segdeploy.parity.report_json import write_report

    report, _ = checked
    write_report(tmp_path / "r.json", report)
    png = tmp_path / "shot.png"
    rc = _load_script().main(["--report", str(tmp_path / "r.json"), "--out", str(png), "--height", "2000"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "shot.html").is_file()
    shot = np.asarray(Image.open(png).convert("RGB"))
    assert shot.shape[1] == 1280 and shot.shape[0] >= 1000
    # the verdict header is painted in the gate's colour (green pass / red fail), not left blank
    top = shot[5:60, 5:400].reshape(-1, 3).astype(int)
    r, g, b = top.mean(axis=0)
    if report["gate"]["passed"]:
        assert g > r + 40 and g > b + 20
    else:
        assert r > g + 60 and r > b + 60
    colours = {tuple(c) for c in shot.reshape(-1, 3)[::7]}
    # the SVG bars were drawn (reference and candidate colours present) ...
    assert (0x4C, 0x6E, 0xF5) in colours and (0xF0, 0x8C, 0x00) in colours
    # ... and the overlay PNGs decoded: the page holds thousands of colours, far more than CSS alone paints
    assert len(colours) > 2000


def test_screenshot_script_without_browser(tmp_path, capsys):
    mod = _load_script()
    rc = mod.main(["--report", str(tmp_path / "r.json"), "--out", str(tmp_path / "s.png"),
                   "--browser", str(tmp_path / "no-such-browser")])
    assert rc == 1 and "no chromium found" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()
