"""Shared test configuration: GPU/TensorRT markers skip with a visible reason where absent."""

from __future__ import annotations

import importlib.util

import pytest


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    has_trt = importlib.util.find_spec("tensorrt") is not None
    has_cuda = _has_cuda()
    for item in items:
        # get_closest_marker, not ``in item.keywords``: keywords also hold every parent directory's name
        if item.get_closest_marker("gpu") is not None and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU: none on this machine (run on a GPU host)"))
        if item.get_closest_marker("trt") is not None and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT: `import tensorrt` fails here (pip install segdeploy[trt] on a GPU host)"))


@pytest.fixture(autouse=True, scope="session")
def _hermetic_cache(tmp_path_factory):
    """segdeploy's user cache (calibration statistics, timing caches) goes to a per-session temp dir."""
    import os

    old = os.environ.get("SEGDEPLOY_CACHE_DIR")
    os.environ["SEGDEPLOY_CACHE_DIR"] = str(tmp_path_factory.mktemp("segdeploy-cache"))
    yield
    if old is None:
        os.environ.pop("SEGDEPLOY_CACHE_DIR", None)
    else:
        os.environ["SEGDEPLOY_CACHE_DIR"] = old
