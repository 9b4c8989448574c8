"""Publishing a directory as a whole: lock, recovery, a marked staging directory beside it, one-step swap.

Nothing here knows what the directory holds; :class:`~segdeploy.exportdir.transaction.Transaction` (an export
directory) and :func:`segdeploy.bundle.stage.make_bundle` (a bundle) are built on it.

Contract
--------
``with StagedDirectory(target) as sd: sd.stage(); <write into sd.staging>; sd.publish()``:

* :meth:`StagedDirectory.open` creates the parent, holds a handle to it (every sibling operation is relative to
  it), takes the :class:`~segdeploy.exportdir.lock.DirLock` and **recovers** under it: a publish cut off between
  its two renames (only ``.<name>.old-*`` left) gets the previous complete set back; a published directory left
  marked loses its marker; stale ``.<name>.staging-*`` / ``.<name>.old-*`` directories of ours are removed.
  Recovery renames or removes only real directories of ours holding the work marker
  (:data:`segdeploy.safefs.WORK_MARKER`) and leaves anything else (a planted link, someone's directory) alone with
  a note in ``notes``.
* :meth:`StagedDirectory.stage` makes the marked work directory ``.<name>.staging-<hex>`` (same filesystem, never
  a published name), with the published directory's mode (new: ``0777 & ~umask``).
* :meth:`StagedDirectory.publish` replaces ``target`` by the staged directory **in one step**:
  ``renameat2(RENAME_EXCHANGE)`` swaps them atomically (readers see the old set or the new one, never a mix);
  where the filesystem cannot exchange, two renames, undone on failure and recovered by the next run when cut
  off. The previous set is marked before it leaves its name; the published set's marker is removed last.
* :meth:`StagedDirectory.close` (leaving the ``with`` block) removes an unpublished staging directory, closes the
  handles and releases the lock; idempotent.

Errors are :class:`~segdeploy.errors.ArtifactError` lines except :meth:`publish`, which raises OSError for the
caller to word (``nothing was published``). :func:`publish_directory` and :func:`clean_work_dirs` are the same
steps for a caller that holds the lock itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Iterable, Iterator

from segdeploy import safefs
from segdeploy.errors import ArtifactError
from segdeploy.exportdir.lock import DirLock

STAGING_TAG = "staging"
OLD_TAG = "old"
_RENAME_EXCHANGE = 2


def _exchange(dir_fd: int, a: str, b: str) -> bool:
    """Atomically swap two entries of the directory ``dir_fd`` (Linux renameat2). False when unsupported here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(dir_fd, os.fsencode(a), dir_fd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def describe_os_error(e: OSError, what: str) -> str:
    """``what``: why, as one line for a failed write (no space left is named as such)."""
    if e.errno == errno.ENOSPC:
        return f"{what}: no space left on the device; free space and re-run (nothing was published)"
    return f"{what}: {e.strerror or e}; check free space and permissions (nothing was published)"


# ------------------------------------------------------------------------------------------- work directories


def _work_names(parent_fd: int, name: str, tag: str) -> list[str]:
    """Names in ``parent_fd`` of the form ``.<name>.<tag>-<hex>`` (staging, old sets), sorted."""
    pattern = re.compile(rf"\.{re.escape(name)}\.{re.escape(tag)}-[0-9a-f]+")
    return sorted(n for n in os.listdir(parent_fd) if pattern.fullmatch(n))


def clean_work_dirs(parent_fd: int, target: Path, tags: Iterable[str], also: Iterable[str] = ()) -> list[str]:
    """Remove the stale work directories ``.<name>.<tag>-*`` beside ``target`` (and the names in ``also``) that
    are ours (:func:`segdeploy.safefs.is_work_dir`); return a note for each one left alone. The caller holds
    ``target``'s :class:`DirLock`."""
    names = [n for tag in tags for n in _work_names(parent_fd, target.name, tag)] + list(also)
    notes = []
    for n in names:
        if not safefs.remove_work_dir(parent_fd, n):
            notes.append(f"left {target.parent / n} alone: it is not a segdeploy work directory (a link, another "
                         "user's, or without segdeploy's marker); remove it if it is not yours")
    return notes


# ------------------------------------------------------------------------------------------- publishing


def _publish_at(pfd: int, staging: str, target: str) -> None:
    """Replace ``target`` by the marked work directory ``staging`` (both in ``pfd``) in one step.

    renameat2 exchange, or two renames where unsupported (undone on failure; a cut-off run is recovered by the
    next :class:`StagedDirectory`). The previous set is marked before it leaves its name, so only a directory of
    ours is ever restored or removed; the published set's marker is removed last. Raises OSError."""
    st = safefs.lstat_at(pfd, target)
    if st is None:
        os.rename(staging, target, src_dir_fd=pfd, dst_dir_fd=pfd)
        _unmark(pfd, target)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "the published path is not a directory", target)
    with safefs.dir_handle(target, dir_fd=pfd, follow=False) as previous:
        safefs.mark_work_dir(previous)
        try:
            exchanged = _exchange(pfd, staging, target)
        except BaseException:
            safefs.unmark_work_dir(previous)
            raise
        if not exchanged:
            old = f".{target}.{OLD_TAG}-{secrets.token_hex(4)}"
            os.rename(target, old, src_dir_fd=pfd, dst_dir_fd=pfd)
            try:
                os.rename(staging, target, src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                os.rename(old, target, src_dir_fd=pfd, dst_dir_fd=pfd)
                safefs.unmark_work_dir(previous)
                raise
            staging = old
    _unmark(pfd, target)
    shutil.rmtree(staging, dir_fd=pfd, ignore_errors=True)  # now holds the previous set


def _unmark(pfd: int, name: str) -> None:
    """Remove the marker from the just-published ``name`` (a failure here is mended by the next run's recovery)."""
    with contextlib.suppress(OSError), safefs.dir_handle(name, dir_fd=pfd, follow=False) as d:
        safefs.unmark_work_dir(d)


def publish_directory(staging: Path, target: Path) -> None:
    """Replace ``target`` by the work directory ``staging`` (made with :func:`segdeploy.safefs.make_work_dir`
    beside it) in one step; see :func:`_publish_at`. The caller holds ``target``'s :class:`DirLock`.
    Raises OSError; on success ``staging`` no longer exists."""
    if staging.parent != target.parent:
        raise ValueError("staging must be a sibling of the target")
    with safefs.dir_handle(target.parent) as pfd:
        _publish_at(pfd, staging.name, target.name)


# ------------------------------------------------------------------------------------------- the staged directory


class StagedDirectory:
    """A directory replaced as a whole by a staged sibling (see the module docstring). ``target``: absolute."""

    def __init__(self, target: Path):
        self.target = target
        self.lock = DirLock(target)
        self.staging: Path | None = None
        self.notes: list[str] = []
        self.parent_fd: int | None = None  # every sibling operation is relative to it
        self.staging_fd: int | None = None

    def __enter__(self) -> "StagedDirectory":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        """Create the parent and hold its handle, take the lock, recover an interrupted publish. Raises ArtifactError
        (after releasing what it took)."""
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(f"cannot create {parent}: {e.strerror or e}; choose a writable --out") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ArtifactError(f"cannot write in {parent}; fix its permissions or choose another --out")
        try:
            self.parent_fd = safefs.open_dir(parent)
        except OSError as e:
            raise ArtifactError(f"cannot open {parent}: {e.strerror or e}; choose a writable --out") from None
        try:
            self.lock.acquire()
            self._recover()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove the staging directory (if any), close the handles and release the lock. Idempotent."""
        if self.staging_fd is not None:
            os.close(self.staging_fd)
            self.staging_fd = None
        if self.staging is not None:
            shutil.rmtree(self.staging.name, dir_fd=self.parent_fd, ignore_errors=True)
            self.staging = None
        self.lock.release()
        if self.parent_fd is not None:
            os.close(self.parent_fd)
            self.parent_fd = None

    # ---- the published directory
    def target_exists(self) -> bool:
        return safefs.lstat_at(self.parent_fd, self.target.name) is not None

    @contextlib.contextmanager
    def target_handle(self) -> Iterator[int | None]:
        """The published directory's handle (never through a link), or None when it does not exist."""
        t = self.target
        fd = None
        try:
            fd = safefs.open_dir(t.name, dir_fd=self.parent_fd, follow=False)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ArtifactError(f"output path {t} exists and is not a directory; choose another --out") from None
            raise ArtifactError(f"cannot open {t}: {e.strerror or e}; fix its permissions or choose another --out") from None
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def _recover(self) -> None:
        """Under the lock: finish or undo an interrupted publish; remove stale work directories of ours.

        Only real directories of ours named ``.<name>.staging-*`` / ``.<name>.old-*`` and holding the work marker
        are renamed or removed; anything else there is left alone with a note."""
        pfd, name = self.parent_fd, self.target.name
        olds = _work_names(pfd, name, OLD_TAG)
        if not self.target_exists():
            ours = [n for n in olds if safefs.is_work_dir(pfd, n)]
            if ours:
                os.rename(ours[-1], name, src_dir_fd=pfd, dst_dir_fd=pfd)  # the previous complete set comes back
                olds.remove(ours[-1])
                self.notes.append(f"restored {self.target} from an interrupted publish")
        if self.target_exists() and stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
            _unmark(pfd, name)  # restored above, or left by a publish cut short after its swap
        self.notes.extend(clean_work_dirs(pfd, self.target, (STAGING_TAG,), also=olds))

    # ---- the new set
    def stage(self, mode: int | None = None) -> None:
        """Make the marked staging directory (``mode``: default the published directory's, else 0777 & ~umask).
        Raises ArtifactError."""
        name = f".{self.target.name}.{STAGING_TAG}-{secrets.token_hex(4)}"
        try:
            if mode is None:
                st = safefs.lstat_at(self.parent_fd, self.target.name)
                mode = stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISDIR(st.st_mode) else 0o777 & ~umask()
            self.staging_fd = safefs.make_work_dir(self.parent_fd, name, mode)
        except OSError as e:
            raise ArtifactError(describe_os_error(e, f"cannot stage the new files beside {self.target}")) from None
        self.staging = self.target.parent / name

    def publish(self) -> None:
        """Swap the staged directory in (see the module docstring) and make the swap durable. Raises OSError."""
        if self.staging is None:
            raise RuntimeError("publish() without a staged directory")
        os.close(self.staging_fd)
        self.staging_fd = None
        _publish_at(self.parent_fd, self.staging.name, self.target.name)
        self.staging = None
        safefs.fsync_dir(self.parent_fd)
