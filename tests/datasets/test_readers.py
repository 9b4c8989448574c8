"""Dataset readers: folder / list file / VOC layouts, masks, label maps, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segdeploy.datasets import open_dataset, read_image
from segdeploy.datasets.masks import LabelMap, read_mask, write_mask
from segdeploy.errors import DataError, UsageError


def _img(path, h=8, w=10, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _mask(path, h=8, w=10, value=1, mode="P"):
    m = np.full((h, w), value, np.uint8)
    m[0, 0] = 255
    if mode == "P":
        write_mask(path, m)
    else:
        Image.fromarray(m).save(path)
    return m


def test_folder_matches_by_stem_and_streams(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    for i, s in enumerate(["b", "a", "c"]):
        _img(tmp_path / "im" / f"{s}.jpg", seed=i)
        _mask(tmp_path / "m" / f"{s}.png", value=i)
    (tmp_path / "im" / "notes.txt").write_text("x")
    ds = open_dataset(tmp_path / "im", tmp_path / "m")
    assert len(ds) == 3 and ds.has_masks
    samples = list(ds)
    assert [s.stem for s in samples] == ["a", "b", "c"]
    assert samples[0].image.shape == (8, 10, 3) and samples[0].image.dtype == np.uint8
    assert samples[1].mask[1, 1] == 0 and samples[1].mask[0, 0] == 255  # b has value 0 (index 0 of b,a,c)


def test_unmatched_files_are_all_listed(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    for s in ["a", "b", "x1"]:
        _img(tmp_path / "im" / f"{s}.png")
    for s in ["a", "b", "y1", "y2"]:
        _mask(tmp_path / "m" / f"{s}.png")
    with pytest.raises(DataError) as e:
        open_dataset(tmp_path / "im", tmp_path / "m")
    msg = e.value.message
    assert "x1" in msg and "y1" in msg and "y2" in msg and "\n" not in msg


def test_empty_dataset_and_missing_dir(tmp_path):
    (tmp_path / "im").mkdir()
    with pytest.raises(DataError, match="empty"):
        open_dataset(tmp_path / "im")
    with pytest.raises(DataError, match="not a directory"):
        open_dataset(tmp_path / "nope")
    assert len(open_dataset(tmp_path / "im", allow_empty=True)) == 0


def test_corrupt_image_and_mask(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "im" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    _mask(tmp_path / "m" / "a.png")
    ds = open_dataset(tmp_path / "im", tmp_path / "m")
    with pytest.raises(DataError, match="cannot read image .*a.png"):
        list(ds)
    _img(tmp_path / "im" / "a.png")
    (tmp_path / "m" / "a.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read mask"):
        list(open_dataset(tmp_path / "im", tmp_path / "m"))


def test_size_mismatch(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    _img(tmp_path / "im" / "a.png", 8, 10)
    _mask(tmp_path / "m" / "a.png", 9, 10)
    with pytest.raises(DataError, match="must match their image size"):
        list(open_dataset(tmp_path / "im", tmp_path / "m"))


def test_mask_modes(tmp_path):
    m = _mask(tmp_path / "p.png", value=3, mode="P")
    assert np.array_equal(read_mask(tmp_path / "p.png"), m)
    _mask(tmp_path / "l.png", value=4, mode="L")
    assert read_mask(tmp_path / "l.png")[2, 2] == 4
    Image.fromarray(np.full((4, 4), 300, np.uint16)).save(tmp_path / "i16.png")
    assert read_mask(tmp_path / "i16.png")[0, 0] == 300
    gray_rgb = np.full((4, 4, 3), 2, np.uint8)
    Image.fromarray(gray_rgb).save(tmp_path / "g.png")
    assert read_mask(tmp_path / "g.png")[0, 0] == 2
    col = np.zeros((4, 4, 3), np.uint8)
    col[..., 0] = 128
    Image.fromarray(col).save(tmp_path / "c.png")
    with pytest.raises(DataError, match="colour"):
        read_mask(tmp_path / "c.png")


def test_label_map(tmp_path):
    lm = LabelMap.parse("1:0, 2:1,3:255")
    m = np.array([[1, 2], [3, 7]], np.uint8)
    assert lm.apply(m).tolist() == [[0, 1], [255, 7]]
    assert lm.apply(m.astype(np.int64)).tolist() == [[0, 1], [255, 7]]
    (tmp_path / "map.json").write_text('{"1": 0, "2": 1}')
    assert LabelMap.parse(str(tmp_path / "map.json")).mapping == {1: 0, 2: 1}
    with pytest.raises(UsageError, match="RAW:CLASS"):
        LabelMap.parse("1-2")
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    _img(tmp_path / "im" / "a.png")
    _mask(tmp_path / "m" / "a.png", value=1)
    (s,) = list(open_dataset(tmp_path / "im", tmp_path / "m", label_map="1:5"))
    assert s.mask[3, 3] == 5 and s.mask[0, 0] == 255


def test_list_file_paths_and_stems(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    for s in ["a", "b", "c"]:
        _img(tmp_path / "im" / f"{s}.png")
        _mask(tmp_path / "m" / f"{s}.png")
    (tmp_path / "stems.txt").write_text("a\n# comment\nc\n")
    ds = open_dataset(tmp_path / "im", tmp_path / "m", list_file=tmp_path / "stems.txt")
    assert [e.stem for e in ds.entries] == ["a", "c"] and ds.has_masks
    (tmp_path / "pairs.txt").write_text("im/b.png m/b.png\nim/a.png m/a.png\n")
    ds = open_dataset(tmp_path / "im", list_file=tmp_path / "pairs.txt")
    assert [e.stem for e in ds.entries] == ["a", "b"] and ds.entries[0].mask_path.endswith("m/a.png")
    (tmp_path / "bad.txt").write_text("a\nzzz\n")
    with pytest.raises(DataError, match=r"bad.txt:2: no image with stem 'zzz'"):
        open_dataset(tmp_path / "im", list_file=tmp_path / "bad.txt")


def test_voc_layout(tmp_path):
    root = tmp_path / "VOC"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for s in ["2007_1", "2007_2", "2007_3"]:
        _img(root / "JPEGImages" / f"{s}.jpg")
    for s in ["2007_1", "2007_2"]:
        _mask(root / "SegmentationClass" / f"{s}.png")
    ds = open_dataset(root, layout="voc")
    assert [e.stem for e in ds.entries] == ["2007_1", "2007_2"]
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_2\n")
    ds = open_dataset(root, layout="voc", list_file="val")
    assert [e.stem for e in ds.entries] == ["2007_2"]
    with pytest.raises(DataError, match="not a VOC layout"):
        open_dataset(tmp_path, layout="voc")
    with pytest.raises(UsageError, match="unknown dataset layout"):
        open_dataset(root, layout="coco")


def test_read_image_converts_gray(tmp_path):
    Image.fromarray(np.full((5, 6), 9, np.uint8)).save(tmp_path / "g.png")
    a = read_image(tmp_path / "g.png")
    assert a.shape == (5, 6, 3) and (a == 9).all()


def test_shards_partition(tmp_path):
    (tmp_path / "im").mkdir()
    for i in range(7):
        _img(tmp_path / "im" / f"{i}.png")
    ds = open_dataset(tmp_path / "im")
    parts = [ds.subset(i, 3) for i in range(3)]
    stems = sorted(e.stem for p in parts for e in p.entries)
    assert stems == sorted(e.stem for e in ds.entries)


def test_iteration_is_lazy_streaming(tmp_path):
    """Opening lists paths only; items are decoded one at a time as iteration reaches them."""
    (tmp_path / "im").mkdir()
    for i in range(3):
        _img(tmp_path / "im" / f"{i}.png")
    ds = open_dataset(tmp_path / "im")
    (tmp_path / "im" / "2.png").write_bytes(b"broken after opening")
    it = iter(ds)
    assert next(it).stem == "0" and next(it).stem == "1"  # earlier items decode fine
    with pytest.raises(DataError, match="2.png"):
        next(it)


def test_fingerprint_names_the_whole_listing(tmp_path):
    import shutil

    for d in ("im", "m"):
        (tmp_path / "a" / d).mkdir(parents=True)
    for i, s in enumerate(["a", "b", "c", "d"]):
        _img(tmp_path / "a" / "im" / f"{s}.png", seed=i)
        _mask(tmp_path / "a" / "m" / f"{s}.png", value=i)
    ds = open_dataset(tmp_path / "a" / "im", tmp_path / "a" / "m")
    fp = ds.fingerprint
    assert len(fp) == 64 and ds.subset(0, 2).fingerprint == ds.subset(1, 2).fingerprint == fp  # shards share it
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere")  # the same files under another directory
    assert open_dataset(tmp_path / "elsewhere" / "im", tmp_path / "elsewhere" / "m").fingerprint == fp
    assert open_dataset(tmp_path / "a" / "im").fingerprint != fp  # unlabelled
    assert open_dataset(tmp_path / "a" / "im", tmp_path / "a" / "m", label_map="1:0").fingerprint != fp
    _img(tmp_path / "elsewhere" / "im" / "d.png", h=9, seed=7)  # one image replaced by another of another size
    assert open_dataset(tmp_path / "elsewhere" / "im", tmp_path / "elsewhere" / "m").fingerprint != fp


def test_fingerprint_sees_same_named_same_sized_files_of_another_dataset(tmp_path):
    for name, seed in (("x", 0), ("y", 1)):
        (tmp_path / name).mkdir()
        for i in range(3):  # uncompressed: every file of both sets has the same size
            Image.fromarray(np.random.default_rng(seed * 10 + i).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i:05d}.bmp")
    assert open_dataset(tmp_path / "x").fingerprint != open_dataset(tmp_path / "y").fingerprint
