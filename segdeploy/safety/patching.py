"""Replacing attributes of other modules for the duration of a block, one block at a time.

Contract
--------
``with patched([(owner, attr, replacement), ...]):`` sets each attribute and restores what it saved on exit
(deleting attributes that were absent), in reverse order. :data:`PATCH_LOCK` (re-entrant) is held for the
block, so the patch windows of different threads never interleave; callers that patch in several steps take it
first. :data:`MISSING` marks an attribute that was absent.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

MISSING = object()
PATCH_LOCK = threading.RLock()  # patch windows of different threads never interleave (each restores what it saved)


@contextlib.contextmanager
def patched(sinks: list[tuple[Any, str, Any]]) -> Iterator[None]:
    with PATCH_LOCK:
        saved = [(owner, attr, owner.__dict__.get(attr, MISSING) if isinstance(owner, type) else
                  getattr(owner, attr, MISSING)) for owner, attr, _ in sinks]
        try:
            for owner, attr, new in sinks:
                setattr(owner, attr, new)
            yield
        finally:
            for owner, attr, old in reversed(saved):
                if old is MISSING:
                    with contextlib.suppress(AttributeError):
                        delattr(owner, attr)
                else:
                    setattr(owner, attr, old)
