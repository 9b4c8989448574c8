"""Fixtures of the C++ runtime tests: the compiled host harness and a real export directory."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import rt_util


@pytest.fixture(scope="session")
def harness(tmp_path_factory) -> rt_util.Harness:
    reason = rt_util.missing_dependency()
    if reason:
        pytest.skip(reason)
    return rt_util.Harness(rt_util.compile_harness(tmp_path_factory.mktemp("runtime-harness")))


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    """A real export of the shipped example model (opt 1x3x128x128; profile 1..8 x 64..256, multiple 16)."""
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    out = tmp_path_factory.mktemp("runtime-export") / "shapes"
    names = ("background", "circle", "square", "triangle", "ring", "star")
    export_model(str(rt_util.ROOT / "examples" / "shapes_unet.pt2"), out,
                 ExportOptions(shape="1x3x128x128", class_names=names))
    return out


@pytest.fixture(scope="session")
def manifest_doc(export_dir) -> dict:
    return json.loads((export_dir / "manifest.json").read_text())


@pytest.fixture
def make_manifest(manifest_doc, tmp_path):
    """make_manifest(**changes) -> path of a copy of the real manifest with preprocess/profile fields changed."""

    def make(name: str = "manifest.json", profile: dict | None = None, **preprocess) -> Path:
        doc = copy.deepcopy(manifest_doc)
        doc["preprocess"].update(preprocess)
        if profile:
            doc["inputs"][0]["profile"].update(profile)
        return rt_util.write_manifest(tmp_path / name, doc)

    return make
