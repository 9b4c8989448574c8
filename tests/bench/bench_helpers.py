"""Helpers of the bench tests (a uniquely named module: several test folders have a conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segdeploy.runners.base import Runner

K = 4


class TinyUNetish(nn.Module):
    """3 -> K classes, H/W multiples of 2: conv, pool, conv, upsample, 1x1 head (random init, fixed seed)."""

    def __init__(self, k: int = K):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(16, k, 1)

    def forward(self, x):
        a = torch.relu(self.a(x))
        b = torch.relu(self.b(nn.functional.max_pool2d(a, 2)))
        up = nn.functional.interpolate(b, scale_factor=2.0, mode="nearest")
        return self.head(torch.cat([a, up], 1))


def save_pt2(path: Path, seed: int = 0) -> Path:
    """The tiny model as a torch.export program (dynamic batch, H/W multiples of 2), like a user's .pt2."""
    from torch.export import Dim

    torch.manual_seed(seed)
    m = TinyUNetish().eval()
    dyn = {"x": {0: Dim("batch", min=1, max=16), 2: 2 * Dim("h", min=4, max=256), 3: 2 * Dim("w", min=4, max=256)}}
    ep = torch.export.export(m, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=dyn)  # batch 1 would specialise
    torch.export.save(ep, str(path))
    return path


def run_cli(argv: list[str]) -> int:
    from segdeploy.cli import main

    return main([str(a) for a in argv])


def export_dir(model: Path, out: Path, *extra: str) -> Path:
    """A real export directory made by `segdeploy export` (opt 1x3x32x32: profile 1..8 x 16..64 px)."""
    code = run_cli(["export", model, "--out", out, "--shape", "1x3x32x32", "-q", *extra])
    assert code == 0, f"segdeploy export failed with exit {code}"
    return out


class RecordingRunner(Runner):
    """A real runner over a 1x1 convolution in NumPy that logs its lifecycle into a shared list.

    ``split``: when given, every call sets ``last_split`` (the attribute segdeploy.bench reads) to it.
    """

    kind = "numpy"

    def __init__(self, name: str, log: list, k: int = K, seed: int = 0, split=None):
        super().__init__(name)
        self.log = log
        self.w = np.random.default_rng(seed).standard_normal((k, 3)).astype(np.float32)
        self.split = split
        self.last_split = None

    def _open(self) -> None:
        self.log.append(("open", self.name))

    def _infer(self, x: np.ndarray) -> np.ndarray:
        self.log.append(("infer", self.name, tuple(x.shape)))
        if self.split is not None:
            self.last_split = self.split
        return np.einsum("kc,nchw->nkhw", self.w, x)

    def _close(self) -> None:
        self.log.append(("close", self.name))
