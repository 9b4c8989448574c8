"""Progress: the one type every stage reports through, rendered for a terminal, a log, or nothing.

Contract
--------
* ``progress.step("load model")`` -- a step of work: one line on stderr, ``[  12.3s] load model`` (the clock
  runs from the :class:`Progress` object's creation, so every line and the final "done in" agree).
* ``with progress.task("calibrate", total=64, unit="image") as t: t.advance(8)`` -- counted work. On a terminal
  (stderr is a TTY) a tqdm bar with the count, rate and ETA that clears itself when done; in a log (not a TTY)
  plain lines at every tenth of the total (and at most one every 30 s otherwise), each with the count, the
  percentage and the ETA; a final line with the time taken. ``total=None`` counts without an ETA.
* ``Progress(enabled=False)`` (``-q``, ``--json``) and :data:`SILENT` print nothing; library callers that pass
  ``None`` get :func:`as_progress(None) <as_progress>`, which is silent.
* ``progress(msg)`` is ``progress.step(msg)``, so code written against a plain ``Callable[[str], None]`` works.
* Nothing here changes process-wide state; only stderr is written.

Why tqdm: it is the maintained, ubiquitous progress library (already a dependency of the Hugging Face hub, which
most users have), it computes rates and ETAs with smoothing, and it degrades cleanly; the plain-line renderer is
ours because tqdm's non-TTY output is carriage-return noise in CI logs.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO


def _fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class Task:
    """Counted work inside a :class:`Progress` (see the module docstring). Use as a context manager."""

    def __init__(self, progress: "Progress", label: str, total: int | None, unit: str):
        self.progress = progress
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.t0 = time.perf_counter()
        self._bar: Any = None
        self._next_tenth = 1  # the next tenth of the total that prints a line (integers: 3 * 0.1 != 0.3)
        self._last_line = self.t0
        if progress.enabled and progress.is_tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=unit, file=progress.stream, leave=False,
                             dynamic_ncols=True, mininterval=0.2)

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, exc_type, *exc: Any) -> None:
        self.close(failed=exc_type is not None)

    def advance(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` units done so far (of ``total``, when the total became known or changed)."""
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        step = done - self.done
        self.done = done
        if not self.progress.enabled:
            return
        if self._bar is not None:
            self._bar.update(step)
            return
        now = time.perf_counter()
        reached = done * 10 >= self._next_tenth * self.total if self.total else False
        due = reached or now - self._last_line >= 30.0
        if due and (self.total is None or done < self.total):
            if self.total:
                while self._next_tenth * self.total <= done * 10:
                    self._next_tenth += 1
            self._last_line = now
            self.progress.step(self._describe(now))

    def _describe(self, now: float) -> str:
        elapsed = now - self.t0
        if not self.total:
            return f"{self.label}: {self.done} {self.unit}s, {_fmt_seconds(elapsed)}"
        pct = 100.0 * self.done / self.total
        eta = elapsed * (self.total - self.done) / self.done if self.done else None
        eta_txt = f", ETA {_fmt_seconds(eta)}" if eta is not None else ""
        return f"{self.label}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%){eta_txt}"

    def close(self, failed: bool = False) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.progress.enabled and not failed:
            took = _fmt_seconds(time.perf_counter() - self.t0)
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            self.progress.step(f"{self.label}: {count} {self.unit}s in {took}")


class Progress:
    """The progress sink of a command (see the module docstring)."""

    def __init__(self, enabled: bool = True, *, stream: TextIO | None = None, tty: bool | None = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.is_tty = bool(tty) if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since this object was made (the clock of every line)."""
        return time.perf_counter() - self.t0

    def step(self, msg: str) -> None:
        if self.enabled:
            self.stream.write(f"[{self.elapsed:6.1f}s] {msg}\n")
            self.stream.flush()

    __call__ = step

    def task(self, label: str, total: int | None = None, unit: str = "image") -> Task:
        return Task(self, label, total, unit)


SILENT = Progress(enabled=False)


def as_progress(progress: "Progress | Callable[[str], None] | None") -> Progress:
    """A :class:`Progress` for a library caller's argument: itself, :data:`SILENT` for None, or an adapter whose
    steps and task lines go to a plain ``Callable[[str], None]``."""
    if progress is None:
        return SILENT
    if isinstance(progress, Progress):
        return progress
    return _CallableProgress(progress)


class _CallableProgress(Progress):
    def __init__(self, say: Callable[[str], None]):
        super().__init__(True, tty=False)
        self._say = say

    def step(self, msg: str) -> None:
        self._say(msg)

    __call__ = step


__all__ = ["Progress", "SILENT", "Task", "as_progress"]
