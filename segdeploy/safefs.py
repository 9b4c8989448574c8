"""File operations that no link, FIFO, device or shared inode can redirect or hang.

Every file segdeploy opens in an export directory, its lock, a staging or ``.old`` sibling, a report path
(``--report``, ``--html``), a bundle or a cache goes through this module.

Contract
--------
* **Names** are checked as text before any open (:func:`check_name`): a ``str``, not empty, no NUL, no ``/``,
  not ``.`` or ``..``, and encodable (no lone surrogates from a JSON ``\\ud800``). A bad name is one
  :class:`~segdeploy.errors.ArtifactError` line.
* **Reads** open relative to a directory handle with ``O_NOFOLLOW | O_NONBLOCK`` (an open never blocks on a
  FIFO; ``O_NONBLOCK`` is cleared after), ``fstat`` the handle and refuse anything that is not a regular file --
  a symbolic link, FIFO, device, socket or directory -- with one ArtifactError line naming the file and the
  caller's fix (:func:`open_regular`, :func:`read_regular`, :func:`open_file`, :func:`read_file`). ``follow=True``
  is for paths a user names as inputs (a model, a candidate): a final link is followed, but the file it
  reaches must still be regular.
* **Writes** never follow a link and never write into an existing inode: a new file is created
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a temporary name in the same directory and renamed into place
  relative to the directory handle (:func:`atomic_write_at`, :func:`atomic_write`, :func:`atomic_path`). Modes
  are set with ``fchmod`` on the handle of the file this process created. OSError escapes from the ``*_at``
  helpers; the path-level helpers turn it into one ArtifactError line.
* **Shared inodes are foreign**: a file with ``st_nlink > 1`` or another owner is never hard-linked into a new
  set (:func:`link_or_copy_at` copies it) and never chmod'ed (:func:`make_private_copy_if_shared` replaces it by
  a copy first). Nothing here changes the content or mode of an inode this process did not create, except a
  single-link file of its own that it hard-linked itself (the caller records those inodes).
* **Work directories** (staging, old sets) carry a marker file (:data:`WORK_MARKER`) from creation to removal;
  :func:`is_work_dir` -- a real directory (not a link), owned by this user, holding a regular marker with our
  text -- is the only test of "ours" before a rename or a removal (:func:`remove_work_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator

from segdeploy.errors import ArtifactError

WORK_MARKER = ".segdeploy-work"
_MARKER_TEXT = b"segdeploy work directory: staging or previous set of an atomic publish; safe to delete when no run holds the lock\n"
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
CHUNK = 1 << 20


# ------------------------------------------------------------------------------------------- names


def check_name(name: object, where: str = "", fix: str = "use a plain file name") -> str:
    """``name`` when it is one plain, encodable path component; else ArtifactError naming ``where`` and ``fix``."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty or not text"
    elif "\x00" in name:
        problem = "contains a NUL character"
    elif "/" in name:
        problem = "contains '/'"
    elif name in (".", ".."):
        problem = "is '.' or '..'"
    else:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid Unicode (a lone surrogate)"
    if problem:
        shown = f" in {where}" if where else ""
        raise ArtifactError(f"file name {name!r}{shown} {problem}, not a plain file name; {fix}")
    return name


def kind_of(mode: int) -> str:
    """'a FIFO', 'a directory', ... for an ``st_mode`` that is not a regular file."""
    for test, text in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return text
    return "not a regular file"


def _split(path: str | os.PathLike) -> tuple[str, str]:
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    parent, name = os.path.split(p)
    return parent or ".", name


# ------------------------------------------------------------------------------------------- directories


def open_dir(path: str | os.PathLike, *, dir_fd: int | None = None, follow: bool = True) -> int:
    """A directory handle (``O_DIRECTORY``; ``follow=False`` adds ``O_NOFOLLOW``). Raises OSError."""
    return os.open(path, _DIR_FLAGS | (0 if follow else os.O_NOFOLLOW), dir_fd=dir_fd)


@contextlib.contextmanager
def dir_handle(path: str | os.PathLike, *, dir_fd: int | None = None, follow: bool = True) -> Iterator[int]:
    fd = open_dir(path, dir_fd=dir_fd, follow=follow)
    try:
        yield fd
    finally:
        os.close(fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in ``dir_fd``; None when absent."""
    try:
        return os.stat(check_name(name), dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def fsync_dir(dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)


# ------------------------------------------------------------------------------------------- reading


def open_regular(dir_fd: int | None, name: str, *, shown: str | os.PathLike, fix: str, follow: bool = False,
                 write: bool = False) -> int:
    """Open ``name`` (relative to ``dir_fd``) and return its handle, only when it is a regular file.

    ``O_NOFOLLOW`` unless ``follow``; ``O_NONBLOCK`` for the open (a FIFO cannot block it), cleared after.
    ``write`` opens read-write (never creates). FileNotFoundError escapes (the caller knows what a missing file
    means); every other problem is one ArtifactError line: ``<shown> is a FIFO ..., not a regular file; <fix>``.
    """
    check_name(name, os.path.dirname(str(shown)), fix or "use a plain file name")
    flags = (_READ_FLAGS & ~os.O_RDONLY) | (os.O_RDWR if write else os.O_RDONLY) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise ArtifactError(f"{shown} is a symbolic link, not a regular file; {fix}") from None
        if e.errno in (errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EOPNOTSUPP):
            raise ArtifactError(f"{shown} is not a regular file; {fix}") from None
        raise ArtifactError(f"cannot open {shown}: {e.strerror or e}; check its permissions") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{shown} is {kind_of(st.st_mode)}, not a regular file; {fix}")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, *, shown: str | os.PathLike, limit: int | None = None, fix: str = "") -> bytes:
    """All bytes of an open regular file (from offset 0); ArtifactError past ``limit`` bytes."""
    size = os.fstat(fd).st_size
    if limit is not None and size > limit:
        raise ArtifactError(f"{shown} is {size} bytes, more than the {limit} a file of its kind can be; {fix}".rstrip("; "))
    chunks, n = [], 0
    while True:
        b = os.pread(fd, CHUNK, n)
        if not b:
            break
        chunks.append(b)
        n += len(b)
        if limit is not None and n > limit:
            raise ArtifactError(f"{shown} grew past {limit} bytes while it was read; {fix}".rstrip("; "))
    return b"".join(chunks)


def read_regular(dir_fd: int | None, name: str, *, shown: str | os.PathLike, fix: str, follow: bool = False,
                 limit: int | None = None) -> bytes:
    """The bytes of regular file ``name`` in ``dir_fd`` (see :func:`open_regular`). FileNotFoundError escapes."""
    fd = open_regular(dir_fd, name, shown=shown, fix=fix, follow=follow)
    try:
        return read_fd(fd, shown=shown, limit=limit, fix=fix)
    finally:
        os.close(fd)


def open_file(path: str | os.PathLike, *, fix: str, follow: bool = False, shown: str | os.PathLike | None = None) -> int:
    """:func:`open_regular` for a path: its directory is opened (following links: the user chose it), then
    the last component (``follow=False``: never through a link). FileNotFoundError escapes."""
    parent, name = _split(path)
    shown = path if shown is None else shown
    try:
        dfd = open_dir(parent)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ArtifactError(f"cannot open the directory of {shown}: {e.strerror or e}; {fix}") from None
    try:
        return open_regular(dfd, name, shown=shown, fix=fix, follow=follow)
    finally:
        os.close(dfd)


def read_file(path: str | os.PathLike, *, fix: str, follow: bool = False, limit: int | None = None) -> bytes:
    """The bytes of a regular file at ``path`` (see :func:`open_file`). FileNotFoundError escapes."""
    fd = open_file(path, fix=fix, follow=follow)
    try:
        return read_fd(fd, shown=path, limit=limit, fix=fix)
    finally:
        os.close(fd)


def require_regular(path: str | os.PathLike, *, fix: str, follow: bool = True) -> os.stat_result:
    """The ``stat`` of ``path`` when it is a regular file (opened without blocking, then closed).

    For inputs handed by name to a library that opens them itself (ONNX Runtime, TensorRT): a FIFO or device
    is one line instead of a hang. FileNotFoundError escapes."""
    fd = open_file(path, fix=fix, follow=follow)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def hash_fd(fd: int) -> tuple[str, int]:
    """(sha256 hex, byte count) of an open file, from offset 0."""
    h = hashlib.sha256()
    n = 0
    while True:
        b = os.pread(fd, CHUNK, n)
        if not b:
            break
        h.update(b)
        n += len(b)
    return h.hexdigest(), n


# ------------------------------------------------------------------------------------------- writing


def temp_name(name: str, suffix: str = ".tmp") -> str:
    """A fresh hidden name beside ``name`` (``.<name>.<random><suffix>``)."""
    return f".{name[:120]}.{secrets.token_hex(6)}{suffix}"


def create_new(dir_fd: int | None, name: str, mode: int = 0o600) -> int:
    """Create ``name`` exclusively (never through a link, never an existing file); its write handle."""
    return os.open(check_name(name), _CREATE_FLAGS, mode, dir_fd=dir_fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write_at(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644, fsync: bool = False) -> None:
    """Write ``data`` as ``name`` in ``dir_fd``: a new temp file (``O_EXCL | O_NOFOLLOW``), ``fchmod``, then
    ``renameat`` over ``name`` (a link there is replaced, never followed). Raises OSError; no temp file is left."""
    check_name(name)
    tmp = temp_name(name)
    fd = create_new(dir_fd, tmp)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _write_error(path: str | os.PathLike, e: OSError) -> ArtifactError:
    if e.errno == errno.EISDIR or e.errno == errno.ENOTEMPTY or e.errno == errno.EEXIST:
        return ArtifactError(f"cannot write {path}: a directory is in the way; choose another path")
    return ArtifactError(f"cannot write {path}: {e.strerror or e}; check free space and permissions")


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int = 0o644) -> None:
    """:func:`atomic_write_at` for a path (its directory is opened following links: the user chose it).
    Raises ArtifactError."""
    parent, name = _split(path)
    check_name(name, str(path))
    try:
        with dir_handle(parent) as dfd:
            atomic_write_at(dfd, name, data, mode=mode)
    except OSError as e:
        raise _write_error(path, e) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *, mode: int = 0o644) -> Iterator[Path]:
    """A new, empty temporary file beside ``path`` (created ``O_EXCL | O_NOFOLLOW``, mode ``mode``) for a
    library that writes by name; renamed over ``path`` relative to the directory handle on success, removed on
    error. OSError escapes."""
    parent, name = _split(path)
    check_name(name, str(path))
    with dir_handle(parent) as dfd:
        tmp = f".{name[:120]}.{secrets.token_hex(6)}{suffix or '.tmp'}"
        fd = create_new(dfd, tmp)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        try:
            yield Path(parent) / tmp
            st = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"the temporary file became {kind_of(st.st_mode)}", tmp)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise


def copy_fd_at(src_fd: int, dir_fd: int, name: str, *, mode: int = 0o644) -> tuple[str, int]:
    """Copy an open file's bytes into a new file ``name`` in ``dir_fd`` (exclusive create); (sha256, bytes)."""
    h = hashlib.sha256()
    n = 0
    fd = create_new(dir_fd, name)
    try:
        while True:
            b = os.pread(src_fd, CHUNK, n)
            if not b:
                break
            write_all(fd, b)
            h.update(b)
            n += len(b)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        raise
    os.close(fd)
    return h.hexdigest(), n


def is_sole_and_ours(st: os.stat_result) -> bool:
    """A regular file with one link, owned by this user: safe to hard-link into a new set and to chmod."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid()


def link_or_copy_at(src_dir: int, name: str, src_fd: int, dst_dir: int) -> tuple[bool, os.stat_result]:
    """Put the file open as ``src_fd`` (``name`` in ``src_dir``) into ``dst_dir`` under the same name.

    A hard link only when the inode is :func:`is_sole_and_ours` and the link made is that same inode;
    otherwise a copy of ``src_fd``'s bytes (a new inode). Returns (linked, stat of the new entry). Raises OSError.
    """
    st = os.fstat(src_fd)
    if is_sole_and_ours(st):
        try:
            os.link(name, name, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
        except OSError:
            pass
        else:
            got = os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
            if (got.st_dev, got.st_ino) == (st.st_dev, st.st_ino):
                return True, got
            os.unlink(name, dir_fd=dst_dir)  # the name was swapped under us: copy what we opened instead
    copy_fd_at(src_fd, dst_dir, name, mode=0o644)
    return False, os.stat(name, dir_fd=dst_dir, follow_symlinks=False)


def make_private_copy_if_shared(dir_fd: int, name: str, allowed: set[tuple[int, int]], *, shown: str,
                                fix: str) -> int:
    """Open ``name`` (regular, no links followed) for changing its mode; return a handle to an inode that is
    safe to ``fchmod``: the file itself when it has one link and is ours, or its inode is in ``allowed`` (ours,
    hard-linked by this run); otherwise a fresh copy renamed over ``name`` first. Raises OSError/ArtifactError."""
    fd = open_regular(dir_fd, name, shown=shown, fix=fix)
    st = os.fstat(fd)
    if is_sole_and_ours(st) or (st.st_dev, st.st_ino) in allowed:
        return fd
    try:
        tmp = temp_name(name)
        copy_fd_at(fd, dir_fd, tmp)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(fd)
    return open_regular(dir_fd, name, shown=shown, fix=fix)


# ------------------------------------------------------------------------------------------- work directories


def make_work_dir(parent_fd: int, name: str, mode: int) -> int:
    """Create directory ``name`` in ``parent_fd`` holding our marker; chmod it to ``mode``; its handle.
    Raises OSError (nothing is left behind)."""
    os.mkdir(check_name(name), 0o700, dir_fd=parent_fd)
    try:
        dfd = open_dir(name, dir_fd=parent_fd, follow=False)
        try:
            mark_work_dir(dfd)
            os.fchmod(dfd, mode)
        except BaseException:
            os.close(dfd)
            raise
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(name, dir_fd=parent_fd)
        raise
    return dfd


def mark_work_dir(dir_fd: int) -> None:
    """Write the marker into the directory ``dir_fd`` (kept when ours is already there). Raises OSError."""
    try:
        fd = create_new(dir_fd, WORK_MARKER, 0o644)
    except FileExistsError:
        if has_marker(dir_fd):
            return
        raise
    try:
        write_all(fd, _MARKER_TEXT)
    finally:
        os.close(fd)


def unmark_work_dir(dir_fd: int) -> None:
    """Remove the marker (a published directory is not a work directory)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(WORK_MARKER, dir_fd=dir_fd)


def has_marker(dir_fd: int) -> bool:
    try:
        fd = open_regular(dir_fd, WORK_MARKER, shown=WORK_MARKER, fix="")
    except (FileNotFoundError, ArtifactError):
        return False
    try:
        return os.pread(fd, len(_MARKER_TEXT) + 1, 0) == _MARKER_TEXT
    finally:
        os.close(fd)


def is_work_dir(parent_fd: int, name: str) -> bool:
    """True when ``name`` in ``parent_fd`` is a real directory (not a link), owned by this user, with our marker."""
    try:
        st = os.stat(check_name(name), dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return False
        with dir_handle(name, dir_fd=parent_fd, follow=False) as dfd:
            return has_marker(dfd)
    except (OSError, ArtifactError):
        return False


def remove_work_dir(parent_fd: int, name: str) -> bool:
    """Remove ``name`` when :func:`is_work_dir` (fd-relative, links never followed); False when it is not ours."""
    if not is_work_dir(parent_fd, name):
        return False
    shutil.rmtree(name, dir_fd=parent_fd, ignore_errors=True)
    return True


__all__ = [
    "WORK_MARKER", "atomic_path", "atomic_write", "atomic_write_at", "check_name", "copy_fd_at", "create_new",
    "dir_handle", "fsync_dir", "hash_fd", "is_sole_and_ours", "is_work_dir", "kind_of", "link_or_copy_at", "lstat_at",
    "make_private_copy_if_shared", "make_work_dir", "mark_work_dir", "open_dir", "open_file", "open_regular",
    "read_fd", "read_file", "read_regular", "remove_work_dir", "require_regular", "temp_name", "unmark_work_dir",
    "write_all",
]
