from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tinymodels  # noqa: E402


@pytest.fixture()
def tiny():
    return tinymodels.tiny_seg()


@pytest.fixture(scope="session")
def tiny_pt2(tmp_path_factory) -> Path:
    from torch.export import Dim

    m = tinymodels.tiny_seg()
    x = torch.randn(2, 3, 32, 32)
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: Dim("b", max=8), 2: 4 * Dim("h", max=64), 3: 4 * Dim("w", max=64)},))
    p = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    torch.export.save(ep, str(p))
    return p
