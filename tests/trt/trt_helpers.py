"""Helpers shared by the TensorRT layer tests (a module of its own: several test folders have a conftest.py)."""

from __future__ import annotations

from segdeploy.spec import ShapeProfile

PROFILE = ShapeProfile((1, 3, 64, 64), (1, 3, 128, 128), (8, 3, 256, 256), 16)


def plan_bytes(version: tuple[int, int, int, int], size: int = 256, layout: int = 0) -> bytes:
    """A handcrafted plan header (+ zero padding): what TensorRT >= 8.6 writes in its first 28 bytes."""
    b = bytearray(size)
    b[0:4] = b"ftrt"
    b[4:8] = layout.to_bytes(4, "little")
    b[24:28] = bytes(version)
    return bytes(b)
