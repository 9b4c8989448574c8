"""The one CLI option naming the target TensorRT: ``--trt-target V`` (export, calibrate, build, bundle).

Contract
--------
``@trt_target_option(help_text, legacy_alias=False)`` adds ``--trt-target V`` to a click command and passes its
raw value as the keyword ``trt_target`` (None when not given: the command resolves it with
:func:`segdeploy.trt.versions.resolve_target`, whose None is the default target -- the TensorRT installed here,
else JetPack 6.2's 10.3.0). With ``legacy_alias=True`` the command also accepts the old name ``--trt-version V``
(hidden from ``--help``): it prints one line on stderr, ``note: --trt-version is deprecated; use --trt-target
(same values)``, and counts as ``--trt-target``; both given is a UsageError (exit 2) naming the new option.
:data:`TARGET_HELP` is the sentence every command's help uses for the accepted values and the default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from segdeploy.errors import UsageError

OPTION = "--trt-target"
LEGACY = "--trt-version"
TARGET_HELP = ("a version (10.13.3), a JetPack release (jetpack-6.2) or a line (8.6, 10.3, 10.x, 11.x); default: the "
               "TensorRT installed here, else JetPack 6.2's 10.3.0")
DEPRECATION_NOTE = f"note: {LEGACY} is deprecated; use {OPTION} (same values)"
_ALIAS_DEST = "trt_target_legacy_alias"


def resolve_alias(trt_target: str | None, legacy: str | None) -> str | None:
    """The target given under either name (the old one with the deprecation note on stderr)."""
    if legacy is None:
        return trt_target
    if trt_target is not None:
        raise UsageError(f"{LEGACY} is the old name of {OPTION}; give only {OPTION}")
    click.echo(DEPRECATION_NOTE, err=True)
    return legacy


def trt_target_option(help_text: str, *, legacy_alias: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: ``--trt-target`` (+ the hidden ``--trt-version`` alias); see the module docstring."""

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            legacy = kwargs.pop(_ALIAS_DEST, None)
            kwargs["trt_target"] = resolve_alias(kwargs.get("trt_target"), legacy)
            return f(*args, **kwargs)

        if legacy_alias:
            wrapper = click.option(LEGACY, _ALIAS_DEST, default=None, hidden=True, metavar="V")(wrapper)
        return click.option(OPTION, "trt_target", default=None, metavar="V", help=help_text)(wrapper)

    return deco


__all__ = ["DEPRECATION_NOTE", "LEGACY", "OPTION", "TARGET_HELP", "resolve_alias", "trt_target_option"]
