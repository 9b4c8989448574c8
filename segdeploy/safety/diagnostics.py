"""Capturing what PyTorch and the Hugging Face hub say while a model loads, instead of printing it.

Contract
--------
``with captured_diagnostics() as diag:`` records Python warnings and the records of the ``torch`` and
``huggingface_hub`` loggers (and their configured children) inside the block; handlers and propagation are
restored on exit. :class:`Diagnostics` gives the ``lines()``, a one-line ``summary()`` and the
``first_exception()`` PyTorch logged and swallowed.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Iterator


class _Capture(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Diagnostics:
    """What PyTorch (and the Hugging Face hub) said inside :func:`captured_diagnostics`."""

    records: list[logging.LogRecord] = field(default_factory=list)
    warnings: list[warnings.WarningMessage] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for r in self.records:
            with contextlib.suppress(Exception):
                out.append(" ".join(r.getMessage().split()))
        out += [" ".join(str(w.message).split()) for w in self.warnings]
        return [o for o in out if o]

    def summary(self, limit: int = 160) -> str | None:
        """The first message, shortened, plus how many more; None when nothing was said."""
        lines = self.lines()
        if not lines:
            return None
        first = lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."
        return first + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")

    def first_exception(self) -> BaseException | None:
        """The exception PyTorch logged and swallowed (e.g. before its fallback loader), if any."""
        for r in self.records:
            if r.exc_info and r.exc_info[1] is not None:
                return r.exc_info[1]
        return None


@contextlib.contextmanager
def captured_diagnostics(loggers: tuple[str, ...] = ("torch", "huggingface_hub")) -> Iterator[Diagnostics]:
    """Record warnings and those loggers' records inside the block instead of printing them."""
    diag = Diagnostics()
    handler = _Capture(diag.records)
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    for prefix in loggers:
        names = [prefix] + [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefix + ".")]
        for n in names:
            lg = logging.getLogger(n)
            if n == prefix or lg.handlers or not lg.propagate:
                saved.append((lg, lg.handlers[:], lg.propagate))
                lg.handlers = [handler]
                lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                yield diag
            finally:
                diag.warnings.extend(caught)
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers = handlers
            lg.propagate = propagate
