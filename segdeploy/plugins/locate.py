"""Where segdeploy's TensorRT plugin library is: the one locator behind `build`, `check`, `bench` and `doctor`.

Contract
--------
* :data:`PLUGIN_LIBRARY` is the library's file name, :data:`PLUGINS_ENV` the environment variable that points at
  it, :data:`DEFAULT_BUILD_DIR` where `segdeploy plugins build` builds by default (each defined here only).
* :func:`find_library(given=None) <find_library>` -> :class:`LibrarySearch` (path or None, the source that decided,
  the places looked at). Order: ``given`` (the command's ``--plugins``), else ``$SEGDEPLOY_PLUGINS``, else the
  default `segdeploy plugins build` output under the current directory, then under the source checkout this
  package runs from. A file is taken as it is; a directory is searched for :data:`PLUGIN_LIBRARY` (``lib/``
  first, then the directory itself, then anywhere below it). The first source that is *given* decides: a given
  path or variable that holds no library is reported as not found, never skipped for the next source.
* :func:`check_given` -- ``--plugins PATH`` must be a file (UsageError naming the option and the fix).
* :func:`locate_library(given=None, *, needed_by=None) <locate_library>` -> the library to load or None:
  ``given`` (checked), else the search above. ``needed_by`` (the start of a sentence: "this model needs ...")
  turns "not found" into a UsageError that goes on with where it looked and the fix.
* :func:`manifest_hint` -- what the manifest beside an engine says about the plugin library it needs (through
  :func:`segdeploy.manifest.engine_plugins_hint`, the one reader of that optional key of hand-written manifests).
* :func:`library_for_engine` -- the library to load to run one engine (`segdeploy check`): ``given`` wins, else
  the manifest hint decides whether one is needed.

Nothing here loads the library (``doctor`` and the runners do) or imports TensorRT.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segdeploy.errors import UsageError

if TYPE_CHECKING:
    from segdeploy.manifest import EnginePluginsHint

PLUGIN_LIBRARY = "libsegdeploy_trt_plugins.so"
PLUGINS_ENV = "SEGDEPLOY_PLUGINS"
DEFAULT_BUILD_DIR = "build/segdeploy-plugins"
BUILD_HINT = "build it with `segdeploy plugins build`"

GIVEN = "--plugins"
FROM_ENV = f"${PLUGINS_ENV}"
DEFAULT = "default build dir"


@dataclass(frozen=True)
class LibrarySearch:
    """The outcome of :func:`find_library`."""

    path: Path | None  # the library, or None when the deciding source holds none
    source: str  # GIVEN, FROM_ENV or DEFAULT: which source decided
    looked: tuple[str, ...]  # the places looked at, in order

    @property
    def found(self) -> bool:
        return self.path is not None

    @property
    def origin(self) -> str:
        """Where the library came from, in words."""
        return {DEFAULT: "the `segdeploy plugins build` output"}.get(self.source, self.source)

    def describe_miss(self) -> str:
        return f"not found via {self.source}: looked at {', '.join(self.looked)}"

    def require(self, needed_by: str) -> Path:
        """The library, or UsageError: ``needed_by`` (the start of a sentence: "this model needs ...") goes on with
        where it looked and the fix."""
        if self.path is not None:
            return self.path
        raise UsageError(f"{needed_by} and none was found ({self.describe_miss()}); {BUILD_HINT}, set ${PLUGINS_ENV}, "
                         f"or pass {GIVEN} PATH")


def default_roots() -> tuple[Path, ...]:
    """Where the default build directory is looked for: the current directory, then the source checkout."""
    checkout = Path(__file__).resolve().parents[2]
    cwd = Path.cwd()
    return (cwd,) if checkout == cwd else (cwd, checkout)


def _search(path: Path, looked: list[str]) -> Path | None:
    """``path`` itself when it is a file; the library inside it when it is a directory."""
    if path.is_file():
        looked.append(str(path))
        return path
    if not path.is_dir():
        looked.append(f"{path} (does not exist)")
        return None
    for sub in (path / "lib" / PLUGIN_LIBRARY, path / PLUGIN_LIBRARY):
        looked.append(str(sub))
        if sub.is_file():
            return sub
    looked.append(f"{path}/**/{PLUGIN_LIBRARY}")
    deeper = sorted(path.rglob(PLUGIN_LIBRARY))
    return deeper[0] if deeper else None


def find_library(given: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
                 roots: tuple[Path, ...] | None = None) -> LibrarySearch:
    """The plugin library by the order of the module docstring (``env``/``roots`` replace os.environ/the
    default roots, for tests)."""
    env = os.environ if env is None else env
    base = Path.cwd()
    if given is not None:
        candidates, source = [Path(given)], GIVEN
    elif env.get(PLUGINS_ENV):
        candidates, source = [Path(env[PLUGINS_ENV])], FROM_ENV
    else:
        candidates, source = [r / DEFAULT_BUILD_DIR for r in (roots or default_roots())], DEFAULT
    looked: list[str] = []
    for cand in candidates:
        found = _search(cand if cand.is_absolute() else base / cand, looked)
        if found is not None:
            return LibrarySearch(found, source, tuple(looked))
    return LibrarySearch(None, source, tuple(looked))


def check_given(given: str | os.PathLike) -> Path:
    """``--plugins PATH`` as a file, or UsageError naming the option."""
    p = Path(given)
    if not p.is_file():
        raise UsageError(f"{GIVEN} {given} does not exist or is not a file; {BUILD_HINT} or fix the path")
    return p


def locate_library(given: str | os.PathLike | None = None, *, needed_by: str | None = None,
                   env: Mapping[str, str] | None = None, roots: tuple[Path, ...] | None = None) -> Path | None:
    """The plugin library to load (see the module docstring)."""
    if given is not None:
        return check_given(given)
    search = find_library(env=env, roots=roots)
    return search.path if needed_by is None else search.require(needed_by)


def manifest_hint(engine: str | os.PathLike, manifest: str | os.PathLike | None = None) -> EnginePluginsHint:
    """What the manifest (``manifest``: a directory or manifest file, else the one beside ``engine``) says about the
    plugin library ``engine`` needs; hand-written manifests are read too (nothing else of them is trusted).
    No manifest (or not JSON): "not listed, no plugins"."""
    from segdeploy.exportdir import read_manifest_unvalidated
    from segdeploy.manifest import engine_plugins_hint

    eng = Path(engine)
    try:  # a manifest.json that is a FIFO, link or directory is one line (ArtifactError), never a hang
        doc = read_manifest_unvalidated(Path(manifest) if manifest is not None else eng.absolute().parent)
    except OSError:
        doc = None
    return engine_plugins_hint(doc, eng.name)


def library_for_engine(engine: str | os.PathLike, given: str | os.PathLike | None = None,
                       manifest: str | os.PathLike | None = None) -> str | None:
    """The plugin library to load for running ``engine`` (`segdeploy check --plugins`).

    ``given`` wins (UsageError when it is not a file). Otherwise the manifest (``manifest``, else the one beside
    the engine) decides: an ``engines`` entry for this file naming a plugin library, or -- for an engine the
    manifest does not list (a trtexec build) -- a model that needs segdeploy's plugins, means the library is
    located (:func:`locate_library`). A listed engine that needs plugins when none is found raises UsageError;
    otherwise None (no library to load).
    """
    if given is not None:
        return str(check_given(given))
    name = Path(engine).name
    hint = manifest_hint(engine, manifest)
    if hint.listed:
        if not hint.library:
            return None
        return str(locate_library(needed_by=f"{name} needs the plugin library {hint.library} (its manifest entry "
                                            "says so)"))
    if hint.model_needs_plugins:
        found = locate_library()
        return str(found) if found is not None else None
    return None


__all__ = [
    "DEFAULT_BUILD_DIR",
    "PLUGINS_ENV",
    "PLUGIN_LIBRARY",
    "LibrarySearch",
    "check_given",
    "find_library",
    "library_for_engine",
    "locate_library",
    "manifest_hint",
]
