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
from typing import Any, Callable

from segdeploy.errors import ArtifactError
from segdeploy.manifest import MANIFEST_FILENAME, REEXPORT, SCHEMA_NAME, drop_unlisted, validate_manifest

MANIFEST = MANIFEST_FILENAME
MODEL_ONNX = "model.onnx"
TRT_ONNX = "model.trt.onnx"
INT8_ONNX = "model.int8.onnx"
FP16_ONNX = "model.fp16.onnx"
RANGES = "ranges.json"
CALIB_CACHE = "model.calib.cache"
ENGINE_PRECISIONS = ("fp32", "fp16", "int8", "int8-implicit")
KINDS = ("onnx", "onnx-trt", "onnx-int8", "onnx-fp16", "ranges", "calib-cache", "engine")

_OWNED_RE = re.compile(r"^model(\.[A-Za-z0-9_-]+)*\.(onnx|engine)$")
_LEGACY = ("precision_report.json", ".calib_stats", ".calib_cache")


def engine_name(precision: str) -> str:
    """File name of the engine built for ``precision`` (fp32, fp16, int8, int8-implicit)."""
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"unknown engine precision {precision!r}")
    return f"model.{precision}.engine"


def is_owned_name(name: str) -> bool:
    """True for names segdeploy manages in an export directory (everything else is the user's)."""
    return name in (MANIFEST, RANGES, CALIB_CACHE) or name in _LEGACY or bool(_OWNED_RE.match(name))


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
    import hashlib

    h = hashlib.sha256()
    n = 0
    with os.fdopen(fd, "rb", closefd=False) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


class ExportDir:
    """A validated, read-only view of a published export directory (see the module docstring)."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = True) -> "ExportDir":
        """Open and validate ``path`` (an export directory, or its manifest.json). Raises ArtifactError."""
        p = Path(path)
        if p.name == MANIFEST and p.is_file():
            p = p.parent
        if not p.exists():
            raise ArtifactError(f"export directory {p} does not exist; run `segdeploy export MODEL --out {p}` first")
        if not p.is_dir():
            raise ArtifactError(f"{p} is not an export directory; pass the directory `segdeploy export --out` wrote")
        try:
            dfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise ArtifactError(f"cannot open {p}: {e.strerror}; check its permissions") from None
        try:
            doc = _read_manifest_at(dfd, p)
            if verify:
                _verify_files_at(dfd, p, doc)
        finally:
            os.close(dfd)
        return cls(p, doc)

    # ---- typed accessors
    @property
    def profile(self):
        from segdeploy.manifest import onnx_profile_of

        return onnx_profile_of(self.manifest)

    @property
    def preprocess(self):
        from segdeploy.manifest import preprocess_of

        return preprocess_of(self.manifest)

    @property
    def input_name(self) -> str:
        return self.manifest["inputs"][0]["name"]

    @property
    def output_name(self) -> str:
        return self.manifest["outputs"][0]["name"]

    @property
    def num_classes(self) -> int:
        return int(self.manifest["model"]["num_classes"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["model"].get("class_names") or ())

    @property
    def source_sha256(self) -> str:
        return self.manifest["source"]["sha256"]

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
    def needs_plugins(self) -> bool:
        return bool(self.manifest.get("tensorrt_plugins"))

    def onnx_variants(self) -> dict[str, Path]:
        """precision -> the ONNX TensorRT builds from: fp32 (model.trt.onnx when plugins are needed), fp16, int8."""
        out = {"fp32": self.path / (TRT_ONNX if self.needs_plugins else MODEL_ONNX)}
        prec = self.manifest.get("precision") or {}
        for kind in ("fp16", "int8"):
            if prec.get(kind):
                out[kind] = self.path / prec[kind]["file"]
        return out


def _open_at(dfd: int, where: Path, name: str, missing: str) -> int:
    """Open ``name`` in the directory ``dfd`` (``where``) for reading; ArtifactError ``missing`` when absent."""
    try:
        return os.open(name, os.O_RDONLY, dir_fd=dfd)
    except FileNotFoundError:
        raise ArtifactError(missing) from None
    except OSError as e:
        raise ArtifactError(f"cannot read {where / name}: {e.strerror}; check its permissions") from None


def _read_manifest_at(dfd: int, where: Path) -> dict[str, Any]:
    mpath = where / MANIFEST
    fd = _open_at(dfd, where, MANIFEST, f"{where} holds no {MANIFEST}; pass a `segdeploy export` directory, or {REEXPORT}")
    with os.fdopen(fd, "rb") as f:
        raw = f.read(64 << 20)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        detail = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise ArtifactError(f"{mpath} is not valid JSON ({detail}); {REEXPORT}") from None
    return validate_manifest(doc, str(mpath))


def _verify_files_at(dfd: int, where: Path, doc: dict[str, Any]) -> None:
    for name, entry in sorted(doc["files"].items()):
        fd = _open_at(dfd, where, name, f"{where / name} (listed in the manifest) is missing; {REEXPORT}")
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ArtifactError(f"{where / name} is not a regular file; {REEXPORT}")
            sha, n = _hash_fd(fd)
        finally:
            os.close(fd)
        if sha != entry["sha256"] or n != entry["bytes"]:
            raise ArtifactError(
                f"{where / name} does not match the manifest (sha256 {sha[:12]}... vs {entry['sha256'][:12]}...): it "
                f"was modified or replaced after segdeploy wrote it; {REEXPORT}"
            )


# ------------------------------------------------------------------------------------------- locking


class DirLock:
    """Advisory exclusive lock for writers of one export directory (``.<name>.lock`` beside it)."""

    def __init__(self, target: Path):
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ArtifactError(f"cannot create the lock {self.path}: {e.strerror}; choose a writable --out") from None
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
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
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
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2). False when unsupported here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_path(p: Path, directory: bool = False) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(p, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _describe_os_error(e: OSError, what: str) -> str:
    if e.errno == errno.ENOSPC:
        return f"{what}: no space left on the device; free space and re-run (nothing was published)"
    return f"{what}: {e.strerror or e}; check free space and permissions (nothing was published)"


class Transaction:
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
        if t.exists() and not t.is_dir():
            raise ArtifactError(f"output path {t} exists and is not a directory; choose another --out")
        parent = t.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(f"cannot create {parent}: {e.strerror or e}; choose a writable --out") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ArtifactError(f"cannot write in {parent}; fix its permissions or choose another --out")
        self.lock.acquire()
        try:
            self._recover()
            if t.exists() and not os.access(t, os.R_OK | os.W_OK | os.X_OK):
                raise ArtifactError(f"output directory {t} is not writable; fix its permissions or choose another --out")
            if self.fresh:
                self._check_fresh_target()
            else:
                self.base = ExportDir.open(t)
                self.manifest = copy.deepcopy(self.base.manifest)
                self.entries = dict(self.base.files)
            self._make_staging()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Remove the staging directory (if any) and release the lock. Idempotent."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        self.lock.release()

    # ---- staging helpers
    def _siblings(self, tag: str) -> list[Path]:
        return sibling_paths(self.target, tag)

    def _recover(self) -> None:
        """Under the lock: finish or undo an interrupted two-rename publish; remove stale staging dirs."""
        olds = self._siblings("old")
        if olds and not self.target.exists():
            os.rename(olds[-1], self.target)  # the previous complete set comes back
            self.notes.append(f"restored {self.target} from an interrupted publish")
            olds = olds[:-1]
        for p in self._siblings("staging") + olds:
            shutil.rmtree(p, ignore_errors=True)

    def _check_fresh_target(self) -> None:
        t = self.target
        if not t.exists():
            return
        names = os.listdir(t)
        foreign = [n for n in names if not is_owned_name(n)]
        if not foreign:
            return
        ours = False
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            ours = json.loads((t / MANIFEST).read_text(encoding="utf-8")).get("schema") == SCHEMA_NAME
        if not ours:
            shown = ", ".join(sorted(foreign)[:4]) + (", ..." if len(foreign) > 4 else "")
            raise ArtifactError(f"{t} is not a segdeploy export directory and holds other files ({shown}); "
                                "choose an empty or new --out")

    def _make_staging(self) -> None:
        t = self.target
        name = f".{t.name}.staging-{secrets.token_hex(4)}"
        staging = t.parent / name
        try:
            staging.mkdir(mode=0o700)
            mode = (stat.S_IMODE(os.stat(t).st_mode) if t.exists() else (0o777 & ~_umask()))
            os.chmod(staging, mode)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise ArtifactError(_describe_os_error(e, f"cannot stage the new files beside {t}")) from None
        self.staging = staging
        if not t.exists():
            return
        try:
            for n in sorted(os.listdir(t)):
                src = t / n
                if not is_owned_name(n):
                    self.carried.append(n)
                    if src.is_dir() and not src.is_symlink():
                        shutil.copytree(src, staging / n, symlinks=True, copy_function=_link_or_copy)
                    elif src.is_symlink():
                        os.symlink(os.readlink(src), staging / n)
                    else:
                        _link_or_copy(str(src), str(staging / n))
                elif not self.fresh and n in self.entries:
                    _link_or_copy(str(src), str(staging / n))
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot stage the current files of {t}")) from None

    def path(self, name: str) -> Path:
        """A path in the staging directory to write ``name`` to (a new file: a staged link is removed first)."""
        if not is_owned_name(name) or name == MANIFEST:
            raise ValueError(f"{name!r} is not an artifact name segdeploy owns")
        p = self.staging / name
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        return p

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
            with open(p, "wb") as f:
                f.write(data)
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot write {name}")) from None
        self.add(name, kind, derived_from)
        return p

    def add(self, name: str, kind: str, derived_from: tuple[str, ...] = ()) -> FileEntry:
        """List a file written at :meth:`path`; ``derived_from`` names listed files it was made from."""
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        p = self.staging / name
        if not p.is_file():
            raise ArtifactError(f"{name} was not written; this is a segdeploy bug, please report it")
        deps = {}
        for d in derived_from:
            if d not in self.entries:
                raise ValueError(f"{name} derives from {d}, which is not in the new set")
            deps[d] = self.entries[d].sha256
        with open(p, "rb") as f:
            sha, n = _hash_fd(f.fileno())
        entry = FileEntry(name, kind, sha, n, deps)
        self.entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Drop ``name`` from the new set (files derived from it are dropped at commit)."""
        self.entries.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.staging / name).unlink()

    def set_manifest(self, doc: dict[str, Any]) -> None:
        self.manifest = doc

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
        for n in os.listdir(self.staging):
            if is_owned_name(n) and n not in self.entries and n not in self.carried:
                p = self.staging / n
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        drop_unlisted(self.manifest, set(self.entries))

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
            with open(self.staging / MANIFEST, "wb") as f:
                f.write(data)
            for n in list(self.entries) + [MANIFEST]:
                p = self.staging / n
                os.chmod(p, 0o644)
                _fsync_path(p)
            _fsync_path(self.staging, directory=True)
            self._publish()
        except OSError as e:
            raise ArtifactError(_describe_os_error(e, f"cannot publish {self.target}")) from None
        _fsync_path(self.target.parent, directory=True)
        self.committed = ExportDir(self.target, m)
        return self.committed

    def _publish(self) -> None:
        publish_directory(self.staging, self.target)
        self.staging = None


def sibling_paths(target: Path, tag: str) -> list[Path]:
    """Hidden work paths beside ``target`` named ``.<name>.<tag>-*`` (staging, old sets), sorted."""
    prefix = f".{target.name}.{tag}-"
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix))


def publish_directory(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` in one step (renameat2 exchange; two renames where unsupported, undone on
    failure and recovered by the next :class:`Transaction`). The caller holds ``target``'s :class:`DirLock`.
    Raises OSError; on success ``staging`` no longer exists."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous set
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "CALIB_CACHE", "ENGINE_PRECISIONS", "ExportDir", "FP16_ONNX", "FileEntry", "INT8_ONNX", "KINDS", "MANIFEST",
    "MODEL_ONNX", "RANGES", "TRT_ONNX", "DirLock", "Transaction", "engine_name", "is_owned_name", "publish_directory", "sibling_paths",
]
