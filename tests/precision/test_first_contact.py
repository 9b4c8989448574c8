"""`segdeploy export unet.pt --int8` the first time (issue 17): the defaults (--out beside the model, --calib
./calibration/ with its val/ split), the data-shaped profile, the separate-axes verification, and the honest
verdict (checked / NOT CHECKED, the reference-mIoU warning, --require-check, masks for another model refused).
Through the real entry point on a tiny TorchScript model, in a temporary working directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdeploy.cli import main
from segdeploy.exportdir import ExportDir

from precision_helpers import TinySeg

H, W = 48, 64  # the "camera" size of the images (H x W)


def _images(d: Path, n: int, seed: int, size=(H, W), model=None, label_shift: int | None = None) -> None:
    """``n`` JPEGs of ``size`` in ``d``; with ``model`` also ``d/../masks`` from its argmax (shifted by
    ``label_shift`` mod 4 to make masks it never predicts, or set to that constant when >= 4)."""
    from segdeploy.spec import Preprocess

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pre = Preprocess()
    for i in range(n):
        base = rng.uniform(0, 255, (size[0] // 8, size[1] // 8, 3))
        img = np.clip(np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 10, size + (3,)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"frame{seed}_{i:03d}.jpg", quality=95)
        if model is None:
            continue
        back = np.asarray(Image.open(d / f"frame{seed}_{i:03d}.jpg").convert("RGB"))
        x = (back.astype(np.float32) * pre.scale - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)
        with torch.no_grad():
            y = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).argmax(1)[0].numpy()
        if label_shift is not None:
            y = np.full_like(y, label_shift) if label_shift >= 4 else (y + label_shift) % 4
        (d.parent / "masks").mkdir(exist_ok=True)
        Image.fromarray(y.astype(np.uint8)).save(d.parent / "masks" / f"frame{seed}_{i:03d}.png")


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A user's release repo: unet.pt (TorchScript) and a calibration/ folder of images; cwd is the repo."""
    torch.manual_seed(0)
    model = TinySeg().eval()
    torch.jit.trace(model, torch.randn(1, 3, 32, 32)).save(str(tmp_path / "unet.pt"))
    _images(tmp_path / "calibration", 6, seed=1)
    monkeypatch.chdir(tmp_path)
    return tmp_path, model


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_headline_command_with_the_convention(project, capsys):
    root, model = project
    _images(root / "calibration" / "val" / "images", 4, seed=2, model=model)
    code, out, err = _run(capsys, "export", "unet.pt", "--int8")
    assert code == 0, err
    assert "output: unet.segdeploy (default: beside the model; pass --out to choose)" in err
    assert "calibration images: ./calibration/ (the default; pass --calib to choose)" in err
    assert "validation split:" in out + err
    ed = ExportDir.open(root / "unet.segdeploy")
    # the data shaped the profile: opt is the images' size, max covers them; the decision is recorded and said
    assert list(ed.profile.opt) == [1, 3, H, W]
    assert ed.profile.max[2] >= H and ed.profile.max[3] >= W
    src = ed.profile_source
    assert src["opt_from"] == "data" and src["images"] == 10 and src["most_common_hw"] == [H, W]
    assert "profile from the data: opt 1x3x48x64" in err
    # verified on separate axes, said in the manifest, the summary and the progress (counted per shape)
    ver = ed.verification
    labels = [s["label"] for s in ver["shapes"]]
    assert labels[:4] == ["min", "opt", "max-batch", "max-hw"] and ver["corner_verified"] is False
    by = {s["label"]: s["shape"] for s in ver["shapes"]}
    assert by["max-batch"] == [ed.profile.max[0], 3, H, W] and by["max-hw"] == [1, 3] + list(ed.profile.max[2:])
    assert "plan: min, opt, max-batch, max-hw" in out
    assert re.search(r"verify: (\d+)/\1 shapes in", err)
    # checked on the user's split, with units; one clock
    sec = ed.precision_section["int8"]
    assert sec["checked"] is True and sec["accuracy"]["reference"]["miou"] == pytest.approx(1.0)
    assert "mIoU pts" in out and "drop pts" in out and "NOT CHECKED" not in out
    assert out.count("done in") == 1 and re.search(r"^done in \d+\.\ds$", out, re.M)


def test_not_checked_is_loud_in_summary_and_json(project, capsys):
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--calib-method", "max")
    assert code == 0, err
    assert "int8: NOT CHECKED \u2014 no validation split; pass --val DIR or add calibration/val/" in out
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--calib-method", "max", "--json", "-q")
    assert code == 0, err
    entry = json.loads(out)["stages"]["precision"]["precision"]["int8"]
    assert entry["checked"] is False and entry["accuracy"] is None
    assert entry["not_checked"] == "no validation split; pass --val DIR or add calibration/val/"


def test_require_check_fails_before_any_work(project, capsys):
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--require-check")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "--require-check" in lines[0] and "pass --val DIR or add calibration/val/" in lines[0]
    assert "load model" not in err and "Traceback" not in err
    assert not (project[0] / "unet.segdeploy").exists()


def test_no_calibration_folder_says_the_convention(tmp_path, monkeypatch, capsys):
    torch.jit.trace(TinySeg().eval(), torch.randn(1, 3, 32, 32)).save(str(tmp_path / "unet.pt"))
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "export", "unet.pt", "--int8")
    assert code == 2
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: --int8 needs calibration images: no --calib and no ./calibration/ folder here")
    assert "--calib DIR" in line and "calibration/shapes" not in line
    assert not (tmp_path / "unet.segdeploy").exists()


def test_factory_without_out_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "export", "--model", "precision_helpers:TinySeg")
    assert code == 2 and "pass --out DIR" in err and "load model" not in err


def test_masks_for_another_model_are_refused_before_export(project, capsys):
    root, model = project
    _images(root / "calibration" / "val" / "images", 2, seed=2, model=model, label_shift=9)
    code, out, err = _run(capsys, "export", "unet.pt", "--int8")
    assert code == 2
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "has label(s) [9] but the model has 4 classes" in line and "--val" in line
    assert "export with" not in err and not (root / "unet.segdeploy").exists()


def test_meaningless_reference_is_a_warning(project, capsys):
    root, model = project
    _images(root / "calibration" / "val" / "images", 3, seed=2, model=model, label_shift=1)  # never what it predicts
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--calib-method", "max", "--json", "-q")
    assert code == 0, err
    acc = json.loads(out)["stages"]["precision"]["precision"]["int8"]["accuracy"]
    assert acc["reference"]["miou"] < 0.10 and "does not predict these masks' labels" in acc["reference_warning"]
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--calib-method", "max")
    assert code == 0 and "WARNING int8: the PyTorch model's own mIoU" in out


def test_images_above_a_given_max_are_resized_not_refused(project, capsys):
    root, _ = project
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--calib-method", "max", "--shape", "1x3x32x32",
                          "--max-shape", "2x3x32x32")
    assert code == 0, err
    assert "pass --max-shape to cover them" in err  # said once at export, where the option exists
    assert "6 calibration image(s) larger than the profile max 32x32 (H x W) were resized down keeping aspect" in out
    ed = ExportDir.open(root / "unet.segdeploy")
    assert ed.precision_section["int8"]["calibration_set"]["resized_to_fit"] == 6
    assert ed.profile_source["opt_from"] == "--shape" and ed.profile_source["data_fits_profile"] is False


def test_validation_images_above_a_given_max_are_refused_before_export(project, capsys):
    root, model = project
    _images(root / "calibration" / "val" / "images", 2, seed=2, model=model)
    code, out, err = _run(capsys, "export", "unet.pt", "--int8", "--shape", "1x3x32x32", "--max-shape", "2x3x32x32")
    assert code == 2
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "larger than the profile's max H/W 32x32 in pad mode" in line and "--max-shape" in line
    assert "export with" not in err and not (root / "unet.segdeploy").exists()


# ------------------------------------------------------------------------------------------- units


def test_verification_plan_separates_the_axes():
    from segdeploy.export.verify import corner_verified, verification_plan
    from segdeploy.spec import ShapeProfile

    prof = ShapeProfile((1, 3, 256, 256), (1, 3, 512, 512), (8, 3, 1024, 1024), 32)
    plan = dict(verification_plan(prof))
    assert plan["max-batch"] == (8, 3, 512, 512) and plan["max-hw"] == (1, 3, 1024, 1024)
    assert "max" not in plan and (8, 3, 1024, 1024) not in plan.values() and not corner_verified(prof)
    assert max(n * h * w for n, _, h, w in plan.values()) == 8 * 512 * 512  # the corner's 8x1024x1024 is never run
    # max batch 1: the corner is the max-hw shape, verified under the label "max"
    one = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (1, 3, 64, 64), 4)
    assert [lbl for lbl, _ in verification_plan(one)][:3] == ["min", "opt", "max"] and corner_verified(one)


def test_convention_layouts(tmp_path, monkeypatch):
    from segdeploy.datasets.convention import calib_source_of, default_calibration, image_sizes, validation_split_of

    assert default_calibration(tmp_path).calib is None and "--calib DIR" in default_calibration(tmp_path).line
    flat = tmp_path / "calibration"
    _images(flat, 2, seed=0)
    assert default_calibration(tmp_path).calib == "calibration" and validation_split_of(flat) is None
    (flat / "val" / "images").mkdir(parents=True)
    assert validation_split_of(flat) == (flat / "val").resolve()  # outside the working directory: absolute
    monkeypatch.chdir(tmp_path)
    assert validation_split_of("calibration") == Path("calibration/val")  # inside it: as the user types it
    sets = tmp_path / "sets" / "a"  # calibration/<set>/calib + calibration/<set>/val
    (sets / "calib").mkdir(parents=True)
    (sets / "val").mkdir()
    assert calib_source_of(sets) == sets / "calib" and validation_split_of(sets / "calib").resolve() == (sets / "val").resolve()
    assert validation_split_of(tmp_path / "sets") is None  # nothing the convention does not define
    _images(tmp_path / "mixed", 3, seed=1)
    _images(tmp_path / "mixed", 1, seed=2, size=(96, 128))
    sizes = image_sizes(sorted(str(p) for p in (tmp_path / "mixed").iterdir()), "mixed")
    assert sizes.images == 4 and sizes.most_common == (H, W) and sizes.largest == (96, 128)


def test_chance_level_of_the_masks(tmp_path):
    from segdeploy.datasets import open_dataset
    from segdeploy.precision.stage import chance_miou_points

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.png")
    m = np.zeros((10, 20), np.uint8)  # 55% class 0, 15% each of 1..3
    m[:, 11:14], m[:, 14:17], m[:, 17:20] = 1, 2, 3
    Image.fromarray(m).save(tmp_path / "masks" / "a.png")
    ds = open_dataset(tmp_path / "images", tmp_path / "masks")
    assert chance_miou_points(ds, 4) == pytest.approx(12.947, abs=1e-2)  # 4 classes: below 2x13 warns
    m = np.concatenate([m, np.full((10, 20), 255, np.uint8)])  # the ignore index counts for no class
    Image.fromarray(m).save(tmp_path / "masks" / "a.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "a.png")
    assert chance_miou_points(open_dataset(tmp_path / "images", tmp_path / "masks"), 4) == pytest.approx(12.947, abs=1e-2)
