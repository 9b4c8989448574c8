"""Jetson detection on fake trees: module, SoC, L4T, JetPack, the TensorRT/CUDA it ships, DLA cores."""

from __future__ import annotations

import pytest
from fake_jetson import BOARDS, write_board, write_dpkg_status

from segdeploy.platform import jetson

# board, L4T, expected (module, part, soc, cc, jetpack, tensorrt, cuda, dla, table confirmed)
CASES = [
    ("agx_orin_64", "36.3.0",
     ("Jetson AGX Orin 64GB", "p3701-0005", "tegra234", "8.7", "6.0", "8.6.2", "12.2", 2, True)),
    ("orin_nano_devkit", "36.4.3",
     ("Jetson Orin Nano (Developer Kit)", "p3767-0005", "tegra234", "8.7", "6.2", "10.3.0", "12.6", 0, True)),
    ("agx_thor", "38.2.0",
     ("Jetson AGX Thor (Developer Kit)", "p3834-0008", "tegra264", "11.0", "7.0", "10.13", "13.0", 0, True)),
    ("orin_nx_16", "36.4.0",
     ("Jetson Orin NX 16GB", "p3767-0000", "tegra234", "8.7", "6.1", "10.3.0", "12.6", 2, True)),
]


@pytest.mark.parametrize("board,l4t,expected", CASES, ids=[c[0] for c in CASES])
def test_detect_known_boards(tmp_path, board, l4t, expected):
    info = jetson.detect(write_board(tmp_path, board, l4t))
    assert info is not None
    module, part, soc, cc, jp, trt, cuda, dla, confirmed = expected
    assert (info.module, info.part_number, info.soc, info.compute_capability) == (module, part, soc, cc)
    assert (info.l4t, info.jetpack, info.jetpack_source) == (l4t, jp, "L4T table")
    assert (info.tensorrt, info.cuda, info.table_confirmed) == (trt, cuda, confirmed)
    assert info.dla_cores == dla and info.dla_confirmed is True
    assert info.model == BOARDS[board]["model"]


def test_thor_notes_the_unconfirmed_patch_level(tmp_path):
    info = jetson.detect(write_board(tmp_path, "agx_thor", "38.2.1"))
    assert info.jetpack == "7.0" and info.soc_name == "Thor"
    assert any("patch level not confirmed" in n for n in info.notes)


def test_unknown_l4t_gives_no_jetpack_and_names_the_nearest(tmp_path):
    info = jetson.detect(write_board(tmp_path, "orin_nx_16", "36.9.1"))
    assert info.l4t == "36.9.1"
    assert info.jetpack is None and info.tensorrt is None and info.cuda is None and info.table_confirmed is None
    assert info.module == "Jetson Orin NX 16GB" and info.dla_cores == 2  # module facts do not depend on L4T
    (note,) = [n for n in info.notes if "36.9.1" in n]
    assert "not in segdeploy's JetPack table" in note and "36.5.0 (JetPack 6.2.2)" in note


def test_unconfirmed_table_entry_is_marked(tmp_path):
    info = jetson.detect(write_board(tmp_path, "agx_orin_64", "36.5.0"))
    assert info.jetpack == "6.2.2" and info.tensorrt == "10.3.0" and info.table_confirmed is False
    assert any("unconfirmed" in n for n in info.notes)


def test_orin_nx_8gb_dla_is_marked_unconfirmed(tmp_path):
    info = jetson.detect(write_board(tmp_path, "orin_nx_8", "36.4.3"))
    assert info.module == "Jetson Orin NX 8GB" and info.dla_cores == 1 and info.dla_confirmed is False


def test_not_a_jetson(tmp_path):
    assert jetson.detect(tmp_path) is None
    assert jetson.is_jetson(tmp_path) is False


def test_sysfs_device_tree_and_boardids(tmp_path):
    write_board(tmp_path, "agx_orin_64", "36.3.0", sysfs=True)
    dt = jetson.read_device_tree(tmp_path)
    assert dt.model == "NVIDIA Jetson AGX Orin Developer Kit"
    assert dt.boardids == ("3701:0005",)
    assert dt.compatible[-1] == "nvidia,tegra234"
    assert jetson.part_numbers(dt)[0] == "p3701-0005"


def test_l4t_from_dpkg_when_release_file_is_absent(tmp_path):
    write_board(tmp_path, "orin_nano_devkit", None)
    write_dpkg_status(tmp_path, {"nvidia-l4t-core": "36.4.3-20250107174145"})
    info = jetson.detect(tmp_path)
    assert info.l4t == "36.4.3" and info.jetpack == "6.2" and info.tensorrt == "10.3.0"


def test_jetpack_package_overrides_the_table(tmp_path):
    write_board(tmp_path, "agx_thor", "38.2.0")
    write_dpkg_status(tmp_path, {"nvidia-jetpack": "7.0+b128"})
    info = jetson.detect(tmp_path)
    assert (info.jetpack, info.jetpack_source) == ("7.0", "nvidia-jetpack package")
    assert info.tensorrt == "10.13"  # the TensorRT it ships still comes from the L4T row


def test_release_file_only_is_a_jetson_with_unknown_module(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    info = jetson.detect(tmp_path)
    assert info.l4t == "35.4.1" and info.jetpack == "5.1.2" and info.tensorrt == "8.5.2"
    assert info.module is None and info.dla_cores is None
    assert any("module not identified" in n for n in info.notes)


def test_model_name_fallback_without_part_numbers(tmp_path):
    dt = tmp_path / "proc/device-tree"
    dt.mkdir(parents=True)
    (dt / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (dt / "compatible").write_bytes(b"nvidia,tegra234\x00")
    info = jetson.detect(tmp_path)
    assert info.module == "Jetson AGX Orin" and info.part_number is None and info.dla_cores == 2
    assert info.l4t is None and any("no L4T release" in n for n in info.notes)


def test_unlisted_sku_of_a_known_family(tmp_path):
    dt = tmp_path / "proc/device-tree"
    dt.mkdir(parents=True)
    (dt / "compatible").write_bytes(b"nvidia,p3737-0000+p3701-0001\x00nvidia,tegra234\x00")
    m = jetson.module_for(jetson.read_device_tree(tmp_path))
    assert m.part == "p3701-0001" and "unlisted SKU" in m.name and m.dla_cores == 2 and not m.dla_confirmed


@pytest.mark.parametrize("line,expected", [
    ("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x", "36.4.3"),
    ("# R39 (release), REVISION: 2.0, GCID: 45755727, BOARD: generic", "39.2.0"),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref", "32.7.1"),
    ("# R38 (release), REVISION: 2, GCID: 1", "38.2.0"),
    ("garbage", None),
    ("", None),
])
def test_parse_nv_tegra_release(line, expected):
    assert jetson.parse_nv_tegra_release(line) == expected


def test_every_l4t_maps_to_one_jetpack():
    seen: dict[str, str] = {}
    for rel in jetson.JETPACK_RELEASES:
        for l4t in rel.l4t:
            assert l4t not in seen, f"L4T {l4t} in JetPack {seen.get(l4t)} and {rel.jetpack}"
            seen[l4t] = rel.jetpack
            assert jetson.jetpack_for_l4t(l4t) is rel
    assert jetson.jetpack_for_l4t("36.3.0").tensorrt == "8.6.2"
    assert jetson.jetpack_for_l4t(None) is None


def test_to_dict_is_json_ready(tmp_path):
    import json

    d = jetson.detect(write_board(tmp_path, "agx_orin_64", "36.3.0")).to_dict()
    assert json.loads(json.dumps(d)) == d and isinstance(d["notes"], list)
