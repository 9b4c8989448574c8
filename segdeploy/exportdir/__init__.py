"""The export directory: the one owner of every file segdeploy writes there.

An export directory (``segdeploy export ... --out DIR``) holds ``manifest.json`` and the artifacts it lists
in its file table. Nothing else in segdeploy opens these paths for writing; stages receive a
:class:`Transaction` and readers an :class:`ExportDir`.

Contract
--------
* Reading (:mod:`.view`) -- ``ExportDir.open(path)`` returns a validated, read-only view: the manifest's schema
  *and types*, and the sha256 and size of every file in the file table, read through one directory handle. Any
  problem is an :class:`~segdeploy.errors.ArtifactError` naming the file and the fix.
* Publishing a directory as a whole (:mod:`.lock`, :mod:`.staging`) -- :class:`StagedDirectory`: an advisory lock
  (``flock`` on the sibling ``.<name>.lock``; a second writer is one error line), recovery of an interrupted
  publish, a marked staging sibling ``.<name>.staging-*``, and a one-step publish (``renameat2(RENAME_EXCHANGE)``,
  two renames with recovery where the filesystem cannot exchange). The bundle publishes through it too.
* Writing (:mod:`.transaction`) -- ``with Transaction(path, fresh=..., command=...) as txn: ...; txn.commit()``
  stages every output on a :class:`StagedDirectory`, drops files whose inputs changed, validates and publishes
  the complete set in one step; leaving the block without ``commit()`` publishes nothing.
* Outputs never land on inputs (:mod:`.outputs`) -- :func:`guard_outputs`, the one decision for ``--report``,
  ``--html`` and a bundle's ``--out``.

Files that are not segdeploy's (anything but ``manifest.json``, ``model*.onnx``, ``model*.engine``,
``ranges.json``, ``model.calib.cache`` and the legacy ``precision_report.json``/``.calib_*``) are the
user's: they are carried into the new set untouched. Published files are 0644, the directory keeps its mode
(new ones: 0777 & ~umask).

Hostile directories -- every open goes through :mod:`segdeploy.safefs`, relative to directory handles: listed
files must be regular files reached without a link (a link, FIFO, device or directory is one error line, never
a hang); the lock is opened ``O_NOFOLLOW`` and gets our pid only when it is a single-link file of ours; a derived
run hard-links a listed file into staging only when it has one link and is ours (else it is copied, and
``commit()`` changes modes only of inodes this run created or linked that way); staging and ``.old`` siblings
carry a marker (:data:`segdeploy.safefs.WORK_MARKER`) while they exist, and recovery renames or removes only real
directories of ours holding it. A published directory never keeps the marker.
"""

from __future__ import annotations

import os  # noqa: F401 - tests/precision/test_stage.py patches segdeploy.exportdir.os.access (the os module's own)

from segdeploy.exportdir.lock import DirLock
from segdeploy.exportdir.outputs import guard_outputs
from segdeploy.exportdir.staging import StagedDirectory, clean_work_dirs, publish_directory
from segdeploy.exportdir.transaction import Transaction
from segdeploy.exportdir.view import ExportDir, FileEntry, is_owned_name, read_manifest_unvalidated

__all__ = [
    "ExportDir", "FileEntry", "DirLock", "StagedDirectory", "Transaction", "clean_work_dirs", "guard_outputs",
    "is_owned_name", "publish_directory", "read_manifest_unvalidated",
]
