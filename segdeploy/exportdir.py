"""The export directory: the one owner of every file segdeploy writes there.

An export directory (``segdeploy export ... --out DIR``) holds ``manifest.json`` and the artifacts it lists
in its file table. Nothing else in segdeploy opens these paths for writing; stages receive a
:class:`Transaction` and readers an :class:`ExportDir`.

Reading -- ``ExportDir.open(path)`` returns a validated, read-only view: the manifest's schema *and types*
(:func:`segdeploy.manifest.validate_manifest`), and the sha256 and size of every file in the file table,
read through one directory handle so the view is of one published set even if a writer publishes
meanwhile. Any problem is an :class:`~segdeploy.errors.ArtifactError` naming the file and the fix.

Writing -- ``with Transaction(path, fresh=..., command=...) as txn: ...; txn.commit()``:

* an advisory lock (``flock`` on the sibling ``.<name>.lock``) refuses a second concurrent writer with a
  one-line error (the lock dies with its process, SIGKILL included);
* the run stages every output in a sibling temporary directory ``.<name>.staging-*`` (same filesystem,
  never a published name). A derived run (``fresh=False``: calibrate, precision, build) starts from hard
  links of the current set; a fresh run (export) starts empty;
* ``commit()`` hashes every staged file, drops files whose inputs changed or disappeared (each file
  records the sha256 of the files it was derived from, so a new ``ranges.json`` retires the INT8 model and
  engines made from the old one), drops manifest sections that name dropped files, validates the
  manifest, fsyncs, and **publishes the complete set in one step**: ``renameat2(RENAME_EXCHANGE)`` swaps
  the staging directory with the published one atomically (readers see the old set or the new set, never
  a mix); where the filesystem cannot exchange, two renames with recovery on the next run;
* leaving the ``with`` block without ``commit()`` (an error, a tripped gate, Ctrl-C) removes the staging
  directory and publishes nothing; staging left by a SIGKILL is removed by the next run on that directory.

Files that are not segdeploy's (anything but ``manifest.json``, ``model*.onnx``, ``model*.engine``,
``ranges.json``, ``model.calib.cache`` and the legacy ``precision_report.json``/``.calib_*``) are the
user's: they are carried into the new set untouched. A fresh run refuses a non-empty directory that holds
no segdeploy manifest but holds the user's files (``--out .`` by mistake). Published files are 0644, the
directory keeps its mode (new ones: 0777 & ~umask).

Hostile directories -- every open goes through :mod:`segdeploy.safefs`, relative to directory handles:

* the manifest and every listed file must be **regular files reached without a link**: a symbolic link, FIFO,
  device or directory in their place is one ArtifactError line (never a hang, never a read elsewhere);
* the lock is opened ``O_NOFOLLOW``, must be a regular file, and gets our pid only when it is a single-link
  file of ours (a planted link never truncates or creates anything);
* a derived run hard-links a listed file into staging only when it has one link and is ours; a file with
  other links (``st_nlink > 1``) or another owner is **copied**, so the new set never shares an inode with a
  file outside it, and ``commit()`` changes modes only of inodes this run created or linked that way;
* staging and ``.old`` siblings carry a marker (:data:`segdeploy.safefs.WORK_MARKER`) while they exist; recovery
  renames or removes only real directories of ours holding it, and leaves anything else (a planted link,
  someone's directory) alone with a note. A published directory never keeps the marker.

Outputs never land on inputs: :func:`guard_outputs` is the one decision, used by every command that writes a
report (``--report``, ``--html``) or a bundle (``--out``), refusing before any work a path that is, or would
replace, an artifact of an export directory or one of the command's own input files.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from segdeploy import safefs
from segdeploy.errors import ArtifactError, UsageError
from segdeploy.jsonio import parse as parse_json
from segdeploy.manifest import (MAX_MANIFEST_BYTES, REEXPORT, SCHEMA_NAME, ManifestView, drop_unlisted, load_manifest_bytes,
                                validate_manifest)
from segdeploy.vocab import LOWERED_PRECISIONS, MANIFEST, MODEL_ONNX, TRT_ONNX, FileKind, Precision, is_artifact_name

_LEGACY = ("precision_report.json", ".calib_stats", ".calib_cache")


def is_owned_name(name: str) -> bool:
    """True for names segdeploy manages in an export directory (everything else is the user's)."""
    return name in (MANIFEST, safefs.WORK_MARKER) or name in _LEGACY or is_artifact_name(name)


@dataclass(frozen=True)
class FileEntry:
    """One row of the file table."""

    name: str
    kind: str
    sha256: str
    bytes: int
    derived_from: dict[str, str] = field(default_factory=dict)  # input file -> its sha256 when this was made

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha256": self.sha256, "bytes": self.bytes, "derived_from": dict(self.derived_from)}


# ------------------------------------------------------------------------------------------- reading


def _hash_fd(fd: int) -> tuple[str, int]:
    return safefs.hash_fd(fd)


class ExportDir(ManifestView):
    """A validated, read-only view of a published export directory (see the module docstring)."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = True) -> "ExportDir":
        """Open and validate ``path`` (an export directory, or its manifest.json). Raises ArtifactError."""
        p = Path(path)
        if p.name == MANIFEST and os.path.lexists(p) and not os.path.lexists(p / MANIFEST):
            p = p.parent
        if not p.exists():
            raise ArtifactError(f"export directory {p} does not exist; run `segdeploy export MODEL --out {p}` first")
        if not p.is_dir():
            raise ArtifactError(f"{p} is not an export directory; pass the directory `segdeploy export --out` wrote")
        try:
            dfd = safefs.open_dir(p)
        except OSError as e:
            raise ArtifactError(f"cannot open {p}: {e.strerror}; check its permissions") from None
        try:
            doc = _read_manifest_at(dfd, p)
            if verify:
                _verify_files_at(dfd, p, doc)
        finally:
            os.close(dfd)
        return cls(p, doc)

    @classmethod
    def beside(cls, path: str | os.PathLike, *, verify: bool = True) -> "ExportDir | None":
        """The export directory holding the file ``path`` when a ``manifest.json`` entry sits beside it, else None.

        Any entry counts -- a FIFO, a link, a directory named manifest.json is one ArtifactError line from
        :meth:`open`, never silently ignored (nor a hang)."""
        parent = Path(path).parent
        if not os.path.lexists(parent / MANIFEST):
            return None
        return cls.open(parent, verify=verify)

    # ---- typed accessors (the rest come from ManifestView)
    @property
    def files(self) -> dict[str, FileEntry]:
        return {n: FileEntry(n, e["kind"], e["sha256"], e["bytes"], dict(e["derived_from"]))
                for n, e in self.manifest["files"].items()}

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def file(self, name: str) -> Path:
        """Path of a listed file. Raises ArtifactError when the directory does not hold it."""
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.path} holds no {name}; run the stage that makes it first")
        return self.path / name

    def section(self, name: str) -> Any:
        return self.manifest.get(name)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def onnx_variants(self) -> dict[str, Path]:
        """precision -> the ONNX TensorRT builds from: fp32 (model.trt.onnx when plugins are needed), fp16, int8."""
        out = {Precision.FP32: self.path / (TRT_ONNX if self.needs_plugins else MODEL_ONNX)}
        for kind in LOWERED_PRECISIONS:
            entry = self.lowered(kind)
            if entry:
                out[kind] = self.path / entry["file"]
        return out


MANIFEST_LIMIT = MAX_MANIFEST_BYTES  # bytes; a manifest is a few KiB


def _open_at(dfd: int, where: Path, name: str, missing: str) -> int:
    """Open regular file ``name`` in the directory ``dfd`` (``where``) for reading, links never followed, a FIFO
    never waited on; ArtifactError ``missing`` when absent, one line naming the file for anything else."""
    try:
        return safefs.open_regular(dfd, name, shown=where / name, fix=REEXPORT)
    except FileNotFoundError:
        raise ArtifactError(missing) from None


def _read_manifest_at(dfd: int, where: Path) -> dict[str, Any]:
    mpath = where / MANIFEST
    fd = _open_at(dfd, where, MANIFEST, f"{where} holds no {MANIFEST}; pass a `segdeploy export` directory, or {REEXPORT}")
    try:
        raw = safefs.read_fd(fd, shown=mpath, limit=MANIFEST_LIMIT, fix=REEXPORT)
    finally:
        os.close(fd)
    return load_manifest_bytes(raw, str(mpath))


def read_manifest_unvalidated(path: str | os.PathLike) -> Any:
    """The parsed JSON of a manifest without schema validation, for readers of one optional key that must also take
    hand-made manifests (the plugin library an engine needs). ``path``: an export directory or a manifest file.

    None when there is no such entry or it is not JSON; ArtifactError (one line) when the entry is there but is not
    a regular file reached without a link -- a FIFO, a link, a directory is never waited on nor silently ignored."""
    p = Path(path)
    if p.is_dir() and (p.name != MANIFEST or os.path.lexists(p / MANIFEST)):
        p = p / MANIFEST
    try:
        raw = safefs.read_file(p, fix=REEXPORT, limit=MANIFEST_LIMIT)
    except FileNotFoundError:
        return None
    try:
        return parse_json(raw, max_bytes=MANIFEST_LIMIT)
    except ValueError:
        return None


def _open_listed(dfd: int, where: Path, name: str, entry: dict[str, Any]) -> int:
    """A handle to listed file ``name`` after checking its sha256 and size against ``entry``. Raises ArtifactError."""
    fd = _open_at(dfd, where, name, f"{where / name} (listed in the manifest) is missing; {REEXPORT}")
    try:
        sha, n = _hash_fd(fd)
        _check_hash(where / name, sha, n, entry)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_hash(path: Path, sha: str, n: int, entry: dict[str, Any]) -> None:
    if sha != entry["sha256"] or n != entry["bytes"]:
        raise ArtifactError(
            f"{path} does not match the manifest (sha256 {sha[:12]}... vs {entry['sha256'][:12]}...): it "
            f"was modified or replaced after segdeploy wrote it; {REEXPORT}"
        )


def _verify_files_at(dfd: int, where: Path, doc: dict[str, Any]) -> None:
    for name, entry in sorted(doc["files"].items()):
        os.close(_open_listed(dfd, where, name, entry))


# ------------------------------------------------------------------------------------------- locking


class DirLock:
    """Advisory exclusive lock for writers of one export directory (``.<name>.lock`` beside it).

    The lock file is opened ``O_NOFOLLOW | O_NONBLOCK`` relative to the parent directory and must be a regular
    file; it is created exclusively when absent. Our pid is written into it only when it is a single-link file of
    ours, so a planted link or hard link never has anything truncated, written or created through it."""

    def __init__(self, target: Path):
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self.fd: int | None = None

    def _open(self) -> int:
        fix = "remove it (segdeploy recreates its lock) and re-run"
        try:
            with safefs.dir_handle(self.path.parent) as pfd:
                for _ in range(3):
                    try:
                        return safefs.open_regular(pfd, self.path.name, shown=f"the lock {self.path}", fix=fix, write=True)
                    except FileNotFoundError:
                        pass
                    try:
                        return safefs.create_new(pfd, self.path.name, 0o644)
                    except FileExistsError:
                        continue  # another writer created it meanwhile: open that one
        except OSError as e:
            raise ArtifactError(f"cannot create the lock {self.path}: {e.strerror}; choose a writable --out") from None
        raise ArtifactError(f"cannot create the lock {self.path}: it keeps changing; {fix}")

    def acquire(self) -> None:
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 32, 0).decode().strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise ArtifactError(f"another segdeploy run{who} is writing {self.target}; wait for it to finish, "
                                    "or choose another --out") from None
            raise ArtifactError(f"cannot lock {self.path}: {e.strerror}") from None
        if safefs.is_sole_and_ours(os.fstat(fd)):
            with contextlib.suppress(OSError):
                pid = f"{os.getpid()}\n".encode()
                os.pwrite(fd, pid, 0)
                os.ftruncate(fd, len(pid))
        self.fd = fd

    def release(self) -> None:
        # The lock file stays: unlinking it would let a waiter lock an orphaned inode while a third process
        # creates and locks a new file (two writers). It is empty of meaning once no process holds it.
        if self.fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ------------------------------------------------------------------------------------------- publishing

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


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _describe_os_error(e: OSError, what: str) -> str:
    if e.errno == errno.ENOSPC:
        return f"{what}: no space left on the device; free space and re-run (nothing was published)"
    return f"{what}: {e.strerror or e}; check free space and permissions (nothing was published)"


def _carry_link_or_copy(src: str, dst: str) -> None:
    """copytree's copy function for the user's files: a hard link (never followed); else a copy of a regular file
    opened without following links or waiting on a FIFO."""
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError:
        pass
    fd = safefs.open_file(src, fix="move it out of the export directory")
    try:
        parent, name = os.path.split(dst)
        with safefs.dir_handle(parent or ".") as dfd:
            safefs.copy_fd_at(fd, dfd, name, mode=stat.S_IMODE(os.fstat(fd).st_mode))
    finally:
        os.close(fd)


class Transaction(ManifestView):
    """A staged, all-or-nothing update of one export directory (see the module docstring).

    ``fresh=True`` (export): the new set replaces the old one entirely. ``fresh=False`` (derived stages):
    the published directory must be a valid export; the run starts from its files.
    Use as a context manager; call :meth:`commit` to publish.
    """

    def __init__(self, target: str | os.PathLike, *, fresh: bool, command: str,
                 progress: Callable[[str], None] | None = None):
        self.target = Path(os.path.abspath(os.fspath(target)))
        self.fresh = fresh
        self.command = command
        self.say = progress or (lambda msg: None)
        self.lock = DirLock(self.target)
        self.staging: Path | None = None
        self.base: ExportDir | None = None
        self.manifest: dict[str, Any] | None = None
        self.entries: dict[str, FileEntry] = {}
        self.notes: list[str] = []
        self.carried: list[str] = []
        self.committed: ExportDir | None = None
        self._pfd: int | None = None  # the parent directory: every sibling operation is relative to it
        self._sfd: int | None = None  # the staging directory
        self._linked: set[tuple[int, int]] = set()  # inodes of ours hard-linked from the published set

    # ---- lifecycle
    def __enter__(self) -> "Transaction":
        self.begin()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.abort()

    def begin(self) -> None:
        t = self.target
        if t.is_symlink() and t.is_dir():
            self.target = t = Path(os.path.realpath(t))
            self.lock = DirLock(t)
        if os.path.lexists(t) and not (t.is_dir() and not t.is_symlink()):
            raise ArtifactError(f"output path {t} exists and is not a directory; choose another --out")
        parent = t.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(f"cannot create {parent}: {e.strerror or e}; choose a writable --out") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ArtifactError(f"cannot write in {parent}; fix its permissions or choose another --out")
        try:
            self._pfd = safefs.open_dir(parent)
        except OSError as e:
            raise ArtifactError(f"cannot open {parent}: {e.strerror or e}; choose a writable --out") from None
        try:
            self.lock.acquire()
            self._recover()
            if self._target_exists() and not os.access(t, os.R_OK | os.W_OK | os.X_OK):
                raise ArtifactError(f"output directory {t} is not writable; fix its permissions or choose another --out")
            with self._target_handle() as tfd:
                if self.fresh:
                    self._check_fresh_target(tfd)
                elif tfd is None:
                    raise ArtifactError(f"export directory {t} does not exist; run `segdeploy export MODEL --out {t}` first")
                else:
                    self.base = ExportDir(t, _read_manifest_at(tfd, t))
                    self.manifest = copy.deepcopy(self.base.manifest)
                    self.entries = dict(self.base.files)
                self._make_staging(tfd)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Remove the staging directory (if any), close the handles and release the lock. Idempotent."""
        if self._sfd is not None:
            os.close(self._sfd)
            self._sfd = None
        if self.staging is not None:
            shutil.rmtree(self.staging.name, dir_fd=self._pfd, ignore_errors=True)
            self.staging = None
        self.lock.release()
        if self._pfd is not None:
            os.close(self._pfd)
            self._pfd = None

    # ---- the published directory
    def _target_exists(self) -> bool:
        return safefs.lstat_at(self._pfd, self.target.name) is not None

    @contextlib.contextmanager
    def _target_handle(self):
        """The published directory's handle (never through a link), or None when it does not exist."""
        t = self.target
        fd = None
        try:
            fd = safefs.open_dir(t.name, dir_fd=self._pfd, follow=False)
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

    # ---- staging helpers
    def _recover(self) -> None:
        """Under the lock: finish or undo an interrupted publish; remove stale work directories of ours.

        Only real directories of ours named ``.<name>.staging-*`` / ``.<name>.old-*`` and holding the work marker
        are renamed or removed; anything else there is left alone with a note."""
        pfd, name = self._pfd, self.target.name
        olds = _work_names(pfd, name, "old")
        if not self._target_exists():
            ours = [n for n in olds if safefs.is_work_dir(pfd, n)]
            if ours:
                os.rename(ours[-1], name, src_dir_fd=pfd, dst_dir_fd=pfd)  # the previous complete set comes back
                olds.remove(ours[-1])
                self.notes.append(f"restored {self.target} from an interrupted publish")
        if self._target_exists() and stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
            _unmark(pfd, name)  # restored above, or left by a publish cut short after its swap
        self.notes.extend(clean_work_dirs(pfd, self.target, ("staging",), also=olds))

    def _check_fresh_target(self, tfd: int | None) -> None:
        t = self.target
        if tfd is None:
            return
        names = os.listdir(tfd)
        foreign = [n for n in names if not is_owned_name(n)]
        if not foreign:
            return
        ours = False
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError, ArtifactError, AttributeError):
            raw = safefs.read_regular(tfd, MANIFEST, shown=t / MANIFEST, fix=REEXPORT, limit=MANIFEST_LIMIT)
            ours = parse_json(raw, max_bytes=MANIFEST_LIMIT).get("schema") == SCHEMA_NAME
        if not ours:
            shown = ", ".join(sorted(foreign)[:4]) + (", ..." if len(foreign) > 4 else "")
            raise ArtifactError(f"{t} is not a segdeploy export directory and holds other files ({shown}); "
                                "choose an empty or new --out")

    def _make_staging(self, tfd: int | None) -> None:
        t = self.target
        name = f".{t.name}.staging-{secrets.token_hex(4)}"
        try:
            mode = stat.S_IMODE(os.fstat(tfd).st_mode) if tfd is not None else (0o777 & ~_umask())
            self._sfd = safefs.make_work_dir(self._pfd, name, mode)
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot stage the new files beside {t}")) from None
        self.staging = t.parent / name
        if tfd is None:
            return
        try:
            if not self.fresh:
                for n in sorted(self.entries):
                    self._stage_listed(tfd, n)
            for n in sorted(os.listdir(tfd)):
                if not is_owned_name(n) and n not in self.entries:
                    self._carry(tfd, n)
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot stage the current files of {t}")) from None

    def _carry(self, tfd: int, n: str) -> None:
        """The user's file or folder ``n`` into staging, untouched: links stay links, folders are copied with
        hard links, files are hard-linked (copied where linking fails)."""
        self.carried.append(n)
        st = os.stat(n, dir_fd=tfd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(n, dir_fd=tfd), n, dir_fd=self._sfd)
        elif stat.S_ISDIR(st.st_mode):
            shutil.copytree(self.target / n, self.staging / n, symlinks=True, copy_function=_carry_link_or_copy)
        else:
            try:
                os.link(n, n, src_dir_fd=tfd, dst_dir_fd=self._sfd, follow_symlinks=False)
            except OSError:
                _carry_link_or_copy(str(self.target / n), str(self.staging / n))

    def _stage_listed(self, tfd: int, n: str) -> None:
        """Listed file ``n`` into staging, its sha256 checked: a hard link of a single-link file of ours, else a
        copy (a shared or foreign inode never joins the new set)."""
        entry = self.base.manifest["files"][n]
        fd = _open_listed(tfd, self.target, n, entry)
        try:
            linked, st = safefs.link_or_copy_at(tfd, n, fd, self._sfd)
        finally:
            os.close(fd)
        if linked:
            self._linked.add((st.st_dev, st.st_ino))
            return
        rfd = safefs.open_regular(self._sfd, n, shown=self.target / n, fix=REEXPORT)
        try:
            _check_hash(self.target / n, *_hash_fd(rfd), entry)  # the copy is what was verified
        finally:
            os.close(rfd)
        self.notes.append(f"copied {n} into the new set instead of linking it: it has other hard links or another owner")

    def path(self, name: str) -> Path:
        """A path in the staging directory to write ``name`` to (a new file: a staged link is removed first)."""
        if not is_owned_name(name) or name in (MANIFEST, safefs.WORK_MARKER):
            raise ValueError(f"{name!r} is not an artifact name segdeploy owns")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self._sfd)
        return self.staging / name

    def staged(self, name: str) -> Path:
        """Path of a file already in the new set (listed), for reading."""
        if name not in self.entries:
            raise ArtifactError(f"{self.target} holds no {name}; run the stage that makes it first")
        return self.staging / name

    def has(self, name: str) -> bool:
        return name in self.entries

    def write_bytes(self, name: str, data: bytes, kind: str, derived_from: tuple[str, ...] = ()) -> Path:
        """Write ``data`` as artifact ``name`` and list it."""
        p = self.path(name)
        try:
            fd = safefs.create_new(self._sfd, name, 0o644)
            try:
                safefs.write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot write {name}")) from None
        self.add(name, kind, derived_from)
        return p

    def add(self, name: str, kind: str, derived_from: tuple[str, ...] = ()) -> FileEntry:
        """List a file written at :meth:`path`; ``derived_from`` names listed files it was made from."""
        if kind not in FileKind.values():
            raise ValueError(f"unknown artifact kind {kind!r}")
        deps = {}
        for d in derived_from:
            if d not in self.entries:
                raise ValueError(f"{name} derives from {d}, which is not in the new set")
            deps[d] = self.entries[d].sha256
        try:
            fd = safefs.open_regular(self._sfd, name, shown=self.staging / name,
                                     fix="this is a segdeploy bug, please report it")
        except FileNotFoundError:
            raise ArtifactError(f"{name} was not written; this is a segdeploy bug, please report it") from None
        try:
            sha, n = _hash_fd(fd)
        finally:
            os.close(fd)
        entry = FileEntry(name, kind, sha, n, deps)
        self.entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Drop ``name`` from the new set (files derived from it are dropped at commit)."""
        self.entries.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(safefs.check_name(name), dir_fd=self._sfd)

    def set_manifest(self, doc: dict[str, Any]) -> None:
        """The export stage's whole new manifest (a fresh transaction)."""
        self.manifest = doc

    STAGE_SECTIONS = ("tensorrt_plugins", "calibration", "precision", "engines")

    def set_section(self, name: str, value: Any) -> None:
        """Replace (or, with None, remove) a section a stage owns; the sections it names must be listed files."""
        if name not in self.STAGE_SECTIONS:
            raise ValueError(f"{name!r} is not a section a stage writes")
        if value is None:
            self.manifest.pop(name, None)
        else:
            self.manifest[name] = value

    def put_engine(self, entry: dict[str, Any]) -> None:
        """Add an engine entry, replacing any of the same precision or file; entries stay in precision order."""
        kept = [e for e in self.engines if e.get("precision") != entry["precision"] and e.get("file") != entry["file"]]
        order = {p: i for i, p in enumerate(Precision)}
        self.manifest["engines"] = sorted(kept + [entry], key=lambda e: (order.get(e.get("precision"), 99), e.get("file", "")))

    def sha256_of(self, name: str) -> str:
        """The sha256 of a file of the new set (staged or carried over)."""
        if name not in self.entries:
            raise ArtifactError(f"{self.target} holds no {name}; run the stage that makes it first")
        return self.entries[name].sha256

    def staged_manifest(self) -> dict[str, Any]:
        """The manifest as :meth:`commit` would publish it now (a validated copy with the new file table), for a
        stage that checks the set before committing (the engine parity check)."""
        doc = copy.deepcopy(self.manifest)
        doc["files"] = {n: e.to_dict() for n, e in sorted(self.entries.items())}
        return validate_manifest(doc, f"the staged {MANIFEST}")

    # ---- commit
    def _prune(self) -> None:
        changed = True
        while changed:
            changed = False
            for name, e in list(self.entries.items()):
                stale = [d for d, sha in e.derived_from.items() if d not in self.entries or self.entries[d].sha256 != sha]
                if stale:
                    self.remove(name)
                    self.notes.append(f"removed {name}: it was made from a previous {stale[0]} (re-run the stage "
                                      "that makes it)")
                    changed = True
        for n in os.listdir(self._sfd):
            if is_owned_name(n) and n not in self.entries and n not in self.carried and n != safefs.WORK_MARKER:
                if stat.S_ISDIR(os.stat(n, dir_fd=self._sfd, follow_symlinks=False).st_mode):
                    shutil.rmtree(n, dir_fd=self._sfd)
                else:
                    os.unlink(n, dir_fd=self._sfd)
        drop_unlisted(self.manifest, set(self.entries))

    def _seal(self, data: bytes) -> None:
        """Write the manifest; make every listed file and the manifest 0644 and durable -- changing the mode only of
        inodes this run created or hard-linked from its own single-link files (a shared inode is copied first)."""
        sfd = self._sfd
        with contextlib.suppress(FileNotFoundError):
            os.unlink(MANIFEST, dir_fd=sfd)
        fd = safefs.create_new(sfd, MANIFEST, 0o644)
        try:
            safefs.write_all(fd, data)
        finally:
            os.close(fd)
        for n in list(self.entries) + [MANIFEST]:
            fd = safefs.make_private_copy_if_shared(sfd, n, self._linked, shown=str(self.staging / n), fix=REEXPORT)
            try:
                if stat.S_IMODE(os.fstat(fd).st_mode) != 0o644:
                    os.fchmod(fd, 0o644)
                os.fsync(fd)
            finally:
                os.close(fd)
        safefs.fsync_dir(sfd)

    def commit(self) -> ExportDir:
        """Validate and publish the staged set in one step; return the published view. Raises ArtifactError."""
        if self.staging is None:
            raise RuntimeError("commit() outside an open transaction")
        if self.manifest is None:
            raise ArtifactError("nothing to publish: no manifest was produced; this is a segdeploy bug")
        self._prune()
        m = self.manifest
        m["files"] = {n: e.to_dict() for n, e in sorted(self.entries.items())}
        validate_manifest(m, f"the new {MANIFEST}")
        data = (json.dumps(m, indent=2, sort_keys=True) + "\n").encode()
        try:
            self._seal(data)
            self._publish()
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot publish {self.target}")) from None
        safefs.fsync_dir(self._pfd)
        self.committed = ExportDir(self.target, m)
        return self.committed

    def _publish(self) -> None:
        os.close(self._sfd)
        self._sfd = None
        _publish_at(self._pfd, self.staging.name, self.target.name)
        self.staging = None


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


def _publish_at(pfd: int, staging: str, target: str) -> None:
    """Replace ``target`` by the marked work directory ``staging`` (both in ``pfd``) in one step.

    renameat2 exchange, or two renames where unsupported (undone on failure; a cut-off run is recovered by the
    next :class:`Transaction`). The previous set is marked before it leaves its name, so only a directory of
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
            old = f".{target}.old-{secrets.token_hex(4)}"
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


# ------------------------------------------------------------------------------------------- outputs vs inputs


def _stat(path: str | os.PathLike) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _same_file(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _export_dirs_near(paths: Iterable[str]) -> set[str]:
    """Real paths of the export directories among ``paths`` and their parents (a ``manifest.json`` entry in it)."""
    out = set()
    for p in paths:
        real = os.path.realpath(p)
        for d in (real, os.path.dirname(real)):
            if os.path.isdir(d) and os.path.lexists(os.path.join(d, MANIFEST)):
                out.add(d)
    return out


def _owned_stats(d: str) -> list[os.stat_result]:
    try:
        names = [n for n in os.listdir(d) if is_owned_name(n)]
    except OSError:
        return []
    return [s for s in (_stat(os.path.join(d, n)) for n in names) if s is not None]


def guard_outputs(outputs: Iterable[tuple[str, str | os.PathLike | None]],
                  inputs: Iterable[tuple[str, Any]] = (), *, directory: bool = False) -> None:
    """Refuse, before any work, an output that would land on an input or on an export directory's artifact.

    ``outputs``: (option, path) pairs, e.g. ``("--report", "out/r.json")`` (None paths are skipped); ``inputs``:
    (what, path) pairs of the command's own input files and directories (the candidate, the model file, the
    manifest, an export directory; non-path values are skipped). A file output is refused when it (its real path,
    or the same inode) is an input file, is a file an export directory owns (an owned name inside a directory
    holding a ``manifest.json``, or the same inode as one), or names the same file as another output.
    ``directory=True`` (a bundle's ``--out``): refused when it is an input export directory or inside one.
    Raises UsageError, one line."""
    outs = [(opt, os.fspath(p)) for opt, p in outputs if p is not None and os.fspath(p) != ""]
    ins = [(what, os.fspath(p)) for what, p in inputs if isinstance(p, (str, os.PathLike)) and os.fspath(p) != ""]
    dirs = _export_dirs_near(p for _, p in ins)
    for i, (opt, path) in enumerate(outs):
        real = os.path.realpath(path)
        if directory:
            for d in sorted(dirs):
                if real == d or real.startswith(d.rstrip(os.sep) + os.sep):
                    raise UsageError(f"{opt} {path} is inside the export directory {d}; choose a separate {opt}")
            continue
        st = _stat(path)
        for what, src in ins:
            if os.path.realpath(src) == real or (st is not None and not stat.S_ISDIR(st.st_mode) and _same_file(st, _stat(src))):
                raise UsageError(f"{opt} {path} would overwrite {what} {src}; choose another {opt}")
        for d in sorted((dirs | _export_dirs_near([real, os.path.abspath(path)])) - {real}):
            owned_here = os.path.dirname(real) == d and is_owned_name(os.path.basename(real))
            if owned_here or (st is not None and any(_same_file(st, s) for s in _owned_stats(d))):
                shown = os.path.dirname(path) if os.path.realpath(os.path.dirname(path) or ".") == d else d
                raise UsageError(f"{opt} {path} would overwrite an artifact of the export directory {shown or '.'}; "
                                 "choose a path outside it")
        for opt2, path2 in outs[:i]:
            if os.path.realpath(path2) == real:
                raise UsageError(f"{opt2} and {opt} both name {path}; give each its own file")


__all__ = [
    "ExportDir", "FileEntry", "DirLock", "Transaction", "clean_work_dirs", "guard_outputs",
    "is_owned_name", "publish_directory", "read_manifest_unvalidated",
]
