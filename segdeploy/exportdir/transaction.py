"""Writing an export directory: a staged, all-or-nothing update on :class:`~segdeploy.exportdir.staging.StagedDirectory`.

Contract
--------
``with Transaction(path, fresh=..., command=...) as txn: ...; txn.commit()``:

* the lock, the recovery of an interrupted publish, the marked staging directory and the one-step publish are
  :class:`~segdeploy.exportdir.staging.StagedDirectory`'s (a second concurrent writer is one error line);
* a fresh run (export, ``fresh=True``) starts empty, and refuses a non-empty directory that holds no segdeploy
  manifest but holds the user's files (``--out .`` by mistake); a derived run (``fresh=False``: calibrate,
  precision, build) needs a valid export and starts from its files: a listed file is hard-linked into staging
  only when it has one link and is ours, else **copied** (``st_nlink > 1`` or another owner), its sha256
  checked either way, so the new set never shares an inode with a file outside it;
* files that are not segdeploy's (:func:`~segdeploy.exportdir.view.is_owned_name`) are the user's: carried into
  the new set untouched (links stay links, folders are copied with hard links);
* stages write through :meth:`Transaction.path` / :meth:`~Transaction.write_bytes` and list files with
  :meth:`~Transaction.add` (``derived_from``: the listed files it was made from); sections through
  :meth:`~Transaction.set_manifest` / :meth:`~Transaction.set_section` / :meth:`~Transaction.put_engine`;
* :meth:`Transaction.commit` drops files whose inputs changed or disappeared (each file records the sha256 of the
  files it was derived from, so a new ``ranges.json`` retires the INT8 model and engines made from the old one)
  and the manifest sections naming them, validates the manifest, makes every listed file and the manifest 0644
  and durable -- changing the mode only of inodes this run created or linked from its own single-link files --
  and publishes the complete set in one step;
* leaving the ``with`` block without ``commit()`` (an error, a tripped gate, Ctrl-C) removes the staging
  directory and publishes nothing; staging left by a SIGKILL is removed by the next run on that directory.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable

from segdeploy import safefs
from segdeploy.errors import ArtifactError
from segdeploy.exportdir.staging import StagedDirectory, describe_os_error
from segdeploy.exportdir.view import (MANIFEST_LIMIT, ExportDir, FileEntry, check_hash, is_owned_name,
                                      manifest_bytes, open_listed, read_manifest_at, set_file_table)
from segdeploy.jsonio import parse as parse_json
from segdeploy.manifest import REEXPORT, SCHEMA_NAME, ManifestView, drop_unlisted, validate_manifest
from segdeploy.progress import Progress, as_progress
from segdeploy.vocab import MANIFEST, FileKind, Precision


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

    STAGE_SECTIONS = ("tensorrt_plugins", "calibration", "precision", "engines", "end_to_end")

    def __init__(self, target: str | os.PathLike, *, fresh: bool, command: str,
                 progress: Progress | Callable[[str], None] | None = None):
        self.target = Path(os.path.abspath(os.fspath(target)))
        self.fresh = fresh
        self.command = command
        self.progress = as_progress(progress)
        self.base: ExportDir | None = None
        self.manifest: dict[str, Any] | None = None
        self.entries: dict[str, FileEntry] = {}
        self.notes: list[str] = []
        self.carried: list[str] = []
        self.committed: ExportDir | None = None
        self._dir = StagedDirectory(self.target)
        self._linked: set[tuple[int, int]] = set()  # inodes of ours hard-linked from the published set

    @property
    def staging(self) -> Path | None:
        """The staging directory (None outside an open transaction and after commit)."""
        return self._dir.staging

    @property
    def _sfd(self) -> int | None:
        return self._dir.staging_fd

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
            self._dir = StagedDirectory(t)
        if os.path.lexists(t) and not (t.is_dir() and not t.is_symlink()):
            raise ArtifactError(f"output path {t} exists and is not a directory; choose another --out")
        self._dir.open()
        try:
            self.notes.extend(self._dir.notes)
            if self._dir.target_exists() and not os.access(t, os.R_OK | os.W_OK | os.X_OK):
                raise ArtifactError(f"output directory {t} is not writable; fix its permissions or choose another --out")
            with self._dir.target_handle() as tfd:
                if self.fresh:
                    self._check_fresh_target(tfd)
                elif tfd is None:
                    raise ArtifactError(f"export directory {t} does not exist; run `segdeploy export MODEL --out {t}` first")
                else:
                    self.base = ExportDir(t, read_manifest_at(tfd, t))
                    self.manifest = copy.deepcopy(self.base.manifest)
                    self.entries = dict(self.base.files)
                self._make_staging(tfd)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Remove the staging directory (if any), close the handles and release the lock. Idempotent."""
        self._dir.close()

    # ---- staging the current set
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
        self._dir.stage()
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
            raise ArtifactError(describe_os_error(e, f"cannot stage the current files of {t}")) from None

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
        fd = open_listed(tfd, self.target, n, entry)
        try:
            linked, st = safefs.link_or_copy_at(tfd, n, fd, self._sfd)
        finally:
            os.close(fd)
        if linked:
            self._linked.add((st.st_dev, st.st_ino))
            return
        rfd = safefs.open_regular(self._sfd, n, shown=self.target / n, fix=REEXPORT)
        try:
            check_hash(self.target / n, *safefs.hash_fd(rfd), entry)  # the copy is what was verified
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
            raise ArtifactError(describe_os_error(e, f"cannot write {name}")) from None
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
            sha, n = safefs.hash_fd(fd)
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
        set_file_table(doc, self.entries)
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
        set_file_table(m, self.entries)
        validate_manifest(m, f"the new {MANIFEST}")
        try:
            self._seal(manifest_bytes(m))
            self._dir.publish()
        except OSError as e:
            raise ArtifactError(describe_os_error(e, f"cannot publish {self.target}")) from None
        self.committed = ExportDir(self.target, m)
        return self.committed
