"""Compatibility name: the confusion-matrix metrics live in :mod:`segdeploy.metrics` (below both parity and
precision, which share them). Import from there; this alias stays for existing user code."""

from segdeploy.metrics import ConfusionMatrix, summarize

__all__ = ["ConfusionMatrix", "summarize"]
