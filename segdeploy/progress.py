"""Step progress for the CLI: ``[  12.3s] message`` lines on stderr, off when quiet."""

from __future__ import annotations

import time

import click


class StepProgress:
    """Callable progress sink: each call prints one step line with the elapsed time (if enabled)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            click.echo(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", err=True)
